//! How palette colours reach the terminal: as they are, as the nearest of
//! the xterm 256 colours, or as one of the 16 system colours, whichever the
//! terminal says it has; or not at all when the user set `NO_COLOR`.

use ratatui::crossterm::style::available_color_count;
use ratatui::style::Color;

/// How colours reach the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    /// 24-bit colour.
    TrueColor,
    /// The nearest of the xterm 256 colours.
    Ansi256,
    /// The nearest of the 16 system colours.
    Ansi16,
    /// No colours at all (`NO_COLOR`): the canvas is drawn in ink and
    /// paper, the rest with bold and reverse only.
    NoColor,
}

impl ColorMode {
    /// What the terminal says it has. crossterm reads `COLORTERM`
    /// (`truecolor`, `24bit`: the convention terminals and tmux follow),
    /// and without it `TERM` (`*256*`).
    pub fn detect() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        if no_color {
            return ColorMode::NoColor;
        }
        Self::from_count(available_color_count())
    }

    /// The mode for a terminal with `colors` colours, as
    /// [`available_color_count`] counts them (`u16::MAX` for true colour).
    pub fn from_count(colors: u16) -> Self {
        match colors {
            u16::MAX => ColorMode::TrueColor,
            256.. => ColorMode::Ansi256,
            _ => ColorMode::Ansi16,
        }
    }

    /// The terminal colour for `rgb`.
    pub fn color(self, rgb: [u8; 3]) -> Color {
        let [r, g, b] = rgb;
        match self {
            ColorMode::TrueColor => Color::Rgb(r, g, b),
            // It never picks the 16 system colours, which vary by terminal.
            ColorMode::Ansi256 => Color::Indexed(ansi_colours::ansi256_from_rgb(rgb)),
            ColorMode::Ansi16 => nearest_system(rgb),
            ColorMode::NoColor => Color::Reset,
        }
    }
}

/// A system colour for each of `colours`, all different while there are
/// no more than 16: the closest pairs are matched first. Nearest-colour
/// matching alone gives the r/place palette only nine distinct colours on
/// a 16-colour terminal (white and light grey, red and orange, ... come
/// out the same), which makes drawings unreadable.
pub fn assign_system(colours: &[[u8; 3]]) -> Vec<Color> {
    let system: Vec<[u8; 3]> = (0..16u8)
        .map(|i| {
            let (r, g, b) = ansi_colours::rgb_from_ansi256(i);
            [r, g, b]
        })
        .collect();
    let mut pairs: Vec<(u32, usize, usize)> = colours
        .iter()
        .enumerate()
        .flat_map(|(i, &c)| {
            system
                .iter()
                .enumerate()
                .map(move |(j, &s)| (distance(c, s), i, j))
        })
        .collect();
    pairs.sort_unstable();
    let mut out: Vec<Option<Color>> = vec![None; colours.len()];
    let mut taken = [false; 16];
    for (_, i, j) in pairs {
        if out[i].is_none() && !taken[j] {
            out[i] = Some(SYSTEM[j]);
            taken[j] = true;
        }
    }
    out.into_iter()
        .zip(colours)
        .map(|(c, &rgb)| c.unwrap_or_else(|| nearest_system(rgb)))
        .collect()
}

/// How far apart two colours look, roughly: squared RGB distance with
/// each channel weighted by how much it counts for the eye ("redmean").
pub fn distance(a: [u8; 3], b: [u8; 3]) -> u32 {
    let mean = (u32::from(a[0]) + u32::from(b[0])) / 2;
    let d = |i: usize| (i32::from(a[i]) - i32::from(b[i])).unsigned_abs();
    (((512 + mean) * d(0) * d(0)) >> 8) + 4 * d(1) * d(1) + (((767 - mean) * d(2) * d(2)) >> 8)
}

/// The system colours in their ANSI order, named so that a 16-colour
/// terminal gets the codes it knows (30-37, 90-97) rather than an index.
const SYSTEM: [Color; 16] = [
    Color::Black,
    Color::Red,
    Color::Green,
    Color::Yellow,
    Color::Blue,
    Color::Magenta,
    Color::Cyan,
    Color::Gray,
    Color::DarkGray,
    Color::LightRed,
    Color::LightGreen,
    Color::LightYellow,
    Color::LightBlue,
    Color::LightMagenta,
    Color::LightCyan,
    Color::White,
];

/// The system colour nearest to `rgb`, measured against xterm's default
/// values for them (what most terminals start with).
fn nearest_system(rgb: [u8; 3]) -> Color {
    let distance = |i: u8| {
        let (r, g, b) = ansi_colours::rgb_from_ansi256(i);
        [r, g, b]
            .iter()
            .zip(rgb)
            .map(|(&a, b)| (i32::from(a) - i32::from(b)).pow(2))
            .sum::<i32>()
    };
    let best = (0..16u8).min_by_key(|&i| distance(i)).expect("16 colours");
    SYSTEM[usize::from(best)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PALETTE;

    #[test]
    fn the_colour_count_chooses_the_mode() {
        assert_eq!(ColorMode::from_count(u16::MAX), ColorMode::TrueColor);
        assert_eq!(ColorMode::from_count(256), ColorMode::Ansi256);
        assert_eq!(ColorMode::from_count(8), ColorMode::Ansi16);
        assert_eq!(ColorMode::from_count(16), ColorMode::Ansi16);
    }

    #[test]
    fn without_true_colour_the_nearest_of_256_is_used() {
        let indexed = |rgb| match ColorMode::Ansi256.color(rgb) {
            Color::Indexed(i) => i,
            other => panic!("{other:?}"),
        };
        assert_eq!(indexed([0xFF, 0xFF, 0xFF]), 231);
        assert_eq!(indexed([0xE5, 0x00, 0x00]), 160);
        assert_eq!(indexed([0x00, 0x00, 0xEA]), 20);
        assert_eq!(indexed([0x22, 0x22, 0x22]), 235);
        assert_eq!(indexed([0x88, 0x88, 0x88]), 102);
        // All 16 palette colours stay distinct, and none is a system
        // colour, whose value depends on the terminal.
        let mut seen: Vec<u8> = PALETTE.iter().map(|c| indexed(c.rgb)).collect();
        assert!(seen.iter().all(|&i| i >= 16), "{seen:?}");
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 16);
    }

    #[test]
    fn on_sixteen_colours_every_palette_colour_gets_its_own() {
        let rgb: Vec<[u8; 3]> = PALETTE.iter().map(|c| c.rgb).collect();
        let assigned = assign_system(&rgb);
        let mut distinct = assigned.clone();
        distinct.dedup();
        distinct.sort_by_key(|c| format!("{c:?}"));
        distinct.dedup();
        assert_eq!(distinct.len(), 16, "{assigned:?}");
        // The obvious ones stay obvious.
        assert_eq!(assigned[0], Color::White);
        assert_eq!(assigned[5], Color::Red);
        assert_eq!(assigned[13], Color::Blue, "darkblue");
    }

    #[test]
    fn sixteen_colours_are_named_system_colours() {
        let c = |rgb| ColorMode::Ansi16.color(rgb);
        assert_eq!(c([0xFF, 0xFF, 0xFF]), Color::White);
        assert_eq!(c([0x00, 0x00, 0x00]), Color::Black);
        assert_eq!(c([0xE5, 0x00, 0x00]), Color::Red);
        assert_eq!(c([0x02, 0xBE, 0x01]), Color::Green);
        assert_eq!(c([0x00, 0x00, 0xEA]), Color::Blue);
    }
}
