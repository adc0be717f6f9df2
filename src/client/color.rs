//! How palette colours reach the terminal: as they are, as the nearest of
//! the xterm 256 colours, or as one of the 16 system colours, whichever the
//! terminal says it has.

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
}

impl ColorMode {
    /// What the terminal says it has. crossterm reads `COLORTERM`
    /// (`truecolor`, `24bit`: the convention terminals and tmux follow),
    /// and without it `TERM` (`*256*`).
    pub fn detect() -> Self {
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
        }
    }
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
    fn sixteen_colours_are_named_system_colours() {
        let c = |rgb| ColorMode::Ansi16.color(rgb);
        assert_eq!(c([0xFF, 0xFF, 0xFF]), Color::White);
        assert_eq!(c([0x00, 0x00, 0x00]), Color::Black);
        assert_eq!(c([0xE5, 0x00, 0x00]), Color::Red);
        assert_eq!(c([0x02, 0xBE, 0x01]), Color::Green);
        assert_eq!(c([0x00, 0x00, 0xEA]), Color::Blue);
    }
}
