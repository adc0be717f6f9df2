//! The palette bar: the server's colours, the selected one, and where each
//! swatch sits on the bar, which both the drawing and a click use.

use ratatui::layout::{Position, Rect};
use ratatui::style::Color;

use crate::client::color::{ColorMode, assign_system};
use crate::client::keys::Action;
use crate::protocol::PALETTE;

/// Cells per palette slot: marker, key, two swatch cells; in a narrow
/// terminal the marker goes (the selected key is drawn reversed instead),
/// so all 16 colours still fit in the narrowest layout.
pub const SLOT: u16 = 4;
/// The slot width in a narrow terminal.
pub const SLOT_NARROW: u16 = 3;
/// Colours that get a key and a slot: one hex digit each.
pub const KEYED: usize = 16;

/// One palette colour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swatch {
    /// sRGB value.
    pub rgb: [u8; 3],
    /// The colour's name.
    pub name: String,
}

/// The palette and the selected colour.
#[derive(Debug, Clone)]
pub struct Palette {
    /// The server's colours, by index.
    pub swatches: Vec<Swatch>,
    /// Selected palette index.
    pub selected: u8,
    /// How colours reach the terminal.
    pub mode: ColorMode,
    /// On a 16-colour terminal, the system colour of each swatch: all
    /// different, so no two palette colours look the same.
    system: Vec<Color>,
}

impl Palette {
    /// The protocol's default palette, until a server sends its own.
    pub fn new(mode: ColorMode) -> Self {
        let mut palette = Self {
            swatches: PALETTE
                .iter()
                .map(|c| Swatch {
                    rgb: c.rgb,
                    name: c.name.to_string(),
                })
                .collect(),
            // Pixorama starts on a dark grey; black reads well on white.
            selected: 3,
            mode,
            system: Vec::new(),
        };
        palette.assign();
        palette
    }

    fn assign(&mut self) {
        let rgb: Vec<[u8; 3]> = self.swatches.iter().map(|s| s.rgb).collect();
        self.system = assign_system(&rgb);
    }

    /// The colours as RGB, by index.
    pub fn rgbs(&self) -> Vec<[u8; 3]> {
        self.swatches.iter().map(|s| s.rgb).collect()
    }

    /// The server's palette (from its welcome); an empty one keeps ours.
    pub fn replace(&mut self, colours: Vec<([u8; 3], String)>) {
        if colours.is_empty() {
            return;
        }
        self.swatches = colours
            .into_iter()
            .map(|(rgb, name)| Swatch { rgb, name })
            .collect();
        self.selected = self.selected.min(self.swatches.len() as u8 - 1);
        self.assign();
    }

    /// The colour of palette index `i` (black for an index the palette
    /// lacks, which a server never sends).
    pub fn rgb(&self, i: u8) -> [u8; 3] {
        self.swatches.get(usize::from(i)).map_or([0; 3], |s| s.rgb)
    }

    /// The name of palette index `i`.
    pub fn name(&self, i: u8) -> &str {
        self.swatches
            .get(usize::from(i))
            .map_or("?", |s| s.name.as_str())
    }

    /// The terminal colour for `rgb` in this terminal: on 16 colours, a
    /// palette colour gets its own system colour.
    pub fn color(&self, rgb: [u8; 3]) -> Color {
        if self.mode == ColorMode::Ansi16
            && let Some(i) = self.swatches.iter().position(|s| s.rgb == rgb)
            && let Some(&c) = self.system.get(i)
        {
            return c;
        }
        self.mode.color(rgb)
    }

    /// The colour keys. `false` passes the action on.
    pub fn on_action(&mut self, action: Action) -> bool {
        match action {
            Action::PrevColor => self.step(-1),
            Action::NextColor => self.step(1),
            Action::PickColor(i) => {
                if usize::from(i) < self.swatches.len() {
                    self.selected = i;
                }
            }
            _ => return false,
        }
        true
    }

    /// A left click at `at` on the bar drawn in `bar`: selects the colour
    /// there. `false` when it hit no swatch.
    pub fn on_click(&mut self, bar: Rect, at: Position) -> bool {
        match index_at(bar, self.swatches.len(), at) {
            Some(i) => {
                self.selected = i;
                true
            }
            None => false,
        }
    }

    fn step(&mut self, step: i32) {
        let n = self.swatches.len().max(1) as i32;
        self.selected = (i32::from(self.selected) + step).rem_euclid(n) as u8;
    }
}

/// The slot width on `bar`: the wide one when all 16 fit.
pub fn slot_width(bar: Rect) -> u16 {
    if bar.width > KEYED as u16 * SLOT {
        SLOT
    } else {
        SLOT_NARROW
    }
}

/// The palette slot `i` is drawn in.
pub fn slot(bar: Rect, i: usize) -> Rect {
    let w = slot_width(bar);
    Rect::new(bar.x + 1 + i as u16 * w, bar.y, w, 1).intersection(bar)
}

/// The palette index drawn at `at`, if any.
pub fn index_at(bar: Rect, colors: usize, at: Position) -> Option<u8> {
    (0..colors.min(KEYED))
        .find(|&i| slot(bar, i).contains(at))
        .map(|i| i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_click_selects_the_swatch_under_it_and_misses_between_the_bar_ends() {
        let mut palette = Palette::new(ColorMode::TrueColor);
        let bar = Rect::new(0, 20, 100, 1);
        assert_eq!(slot_width(bar), SLOT);
        assert!(palette.on_click(bar, Position::new(1 + 12 * SLOT + 2, 20)));
        assert_eq!(palette.selected, 12);
        assert!(
            !palette.on_click(bar, Position::new(0, 20)),
            "before slot 0"
        );
        assert!(!palette.on_click(bar, Position::new(1 + 16 * SLOT, 20)));
        assert!(!palette.on_click(bar, Position::new(5, 19)), "another row");
        assert_eq!(palette.selected, 12);
    }

    #[test]
    fn the_steps_wrap_and_a_missing_index_is_not_picked() {
        let mut palette = Palette::new(ColorMode::TrueColor);
        palette.replace(vec![([0; 3], "black".into()), ([255; 3], "white".into())]);
        assert_eq!(palette.selected, 1, "clamped into the new palette");
        assert!(palette.on_action(Action::NextColor));
        assert_eq!(palette.selected, 0);
        assert!(palette.on_action(Action::PickColor(5)));
        assert_eq!(palette.selected, 0);
        assert!(!palette.on_action(Action::Place));
    }
}
