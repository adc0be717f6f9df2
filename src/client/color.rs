//! How palette colours reach the terminal: as they are, or as the nearest
//! of the xterm 256 colours, whichever the terminal says it has.

use ratatui::style::Color;

/// How colours reach the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    /// 24-bit colour.
    TrueColor,
    /// The nearest of the xterm 256 colours.
    Ansi256,
}

impl ColorMode {
    /// True colour when the terminal says it has it (`COLORTERM`, the
    /// convention terminals and tmux follow), else 256 colours.
    pub fn from_env() -> Self {
        match std::env::var("COLORTERM") {
            Ok(v) if v.eq_ignore_ascii_case("truecolor") || v.eq_ignore_ascii_case("24bit") => {
                ColorMode::TrueColor
            }
            _ => ColorMode::Ansi256,
        }
    }

    /// The terminal colour for `rgb`.
    pub fn color(self, [r, g, b]: [u8; 3]) -> Color {
        match self {
            ColorMode::TrueColor => Color::Rgb(r, g, b),
            ColorMode::Ansi256 => Color::Indexed(nearest_ansi256([r, g, b])),
        }
    }
}

/// The xterm 256-colour index closest to `rgb`: the best of the 6x6x6 cube
/// and the 24-step grey ramp (the 16 system colours vary by terminal, so
/// they are never chosen).
pub fn nearest_ansi256(rgb: [u8; 3]) -> u8 {
    const LEVELS: [u8; 6] = [0, 95, 135, 175, 215, 255];
    let nearest_level = |v: u8| {
        (0..6)
            .min_by_key(|&i| (i32::from(LEVELS[i]) - i32::from(v)).abs())
            .expect("six levels")
    };
    let dist = |a: [u8; 3], b: [u8; 3]| -> i32 {
        (0..3)
            .map(|i| (i32::from(a[i]) - i32::from(b[i])).pow(2))
            .sum()
    };
    let [r, g, b] = rgb.map(nearest_level);
    let cube = [LEVELS[r], LEVELS[g], LEVELS[b]];
    let cube_index = 16 + 36 * r as u8 + 6 * g as u8 + b as u8;
    let avg = (u32::from(rgb[0]) + u32::from(rgb[1]) + u32::from(rgb[2])) / 3;
    let step = ((avg.saturating_sub(3)) / 10).min(23) as u8;
    let grey = 8 + 10 * step;
    if dist(rgb, [grey; 3]) < dist(rgb, cube) {
        232 + step
    } else {
        cube_index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_true_colour_the_nearest_of_256_is_used() {
        assert_eq!(nearest_ansi256([0xFF, 0xFF, 0xFF]), 231);
        assert_eq!(nearest_ansi256([0xE5, 0x00, 0x00]), 160);
        assert_eq!(nearest_ansi256([0x00, 0x00, 0xEA]), 20);
        assert_eq!(nearest_ansi256([0x22, 0x22, 0x22]), 235);
        assert_eq!(nearest_ansi256([0x88, 0x88, 0x88]), 102);
        // All 16 palette colours stay distinct.
        let mut seen: Vec<u8> = crate::protocol::PALETTE
            .iter()
            .map(|c| nearest_ansi256(c.rgb))
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 16);
    }
}
