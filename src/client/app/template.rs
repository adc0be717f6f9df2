//! The template: an image placed on the canvas at a point, each pixel
//! mapped to the nearest palette colour, shown as a ghost over the canvas
//! (pxls's and Blue Marble's overlay). It counts the pixels where the
//! canvas still differs, kept up to date pixel by pixel, and finds the
//! next one to place.

use super::canvas::Canvas;
use crate::client::image::Image;

/// A template on the canvas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The image's name, for the status bar.
    pub name: String,
    /// The canvas pixel of the image's top-left corner.
    pub at: (u16, u16),
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Draw the ghost (`t` toggles).
    pub ghost: bool,
    /// The image's own colours, kept to map again to a new palette.
    rgb: Vec<Option<[u8; 3]>>,
    /// The palette index each pixel wants; `None` where it is transparent.
    wanted: Vec<Option<u8>>,
    /// Pixels on the canvas that differ from what the template wants.
    left: usize,
}

impl Template {
    /// `image` placed with its top-left corner at `at`, mapped to
    /// `palette`.
    pub fn new(image: Image, at: (u16, u16), palette: &[[u8; 3]]) -> Self {
        let mut t = Self {
            name: image.name,
            at,
            width: image.width,
            height: image.height,
            ghost: true,
            wanted: Vec::new(),
            rgb: image.pixels,
            left: 0,
        };
        t.map(palette);
        t
    }

    /// Maps the image to `palette` (the server may send its own).
    pub fn map(&mut self, palette: &[[u8; 3]]) {
        self.wanted = self
            .rgb
            .iter()
            .map(|p| p.and_then(|rgb| nearest(palette, rgb)))
            .collect();
    }

    /// The palette index the template wants at canvas pixel `(x, y)`.
    pub fn wants(&self, x: u16, y: u16) -> Option<u8> {
        let (tx, ty) = (x.checked_sub(self.at.0)?, y.checked_sub(self.at.1)?);
        if tx >= self.width || ty >= self.height {
            return None;
        }
        self.wanted[usize::from(ty) * usize::from(self.width) + usize::from(tx)]
    }

    /// The colour the template wants most in the `side` x `side` block at
    /// `(x, y)`, for a zoomed-out ghost.
    pub fn wants_in_block(&self, x: u16, y: u16, side: u16) -> Option<u8> {
        let x1 = x
            .saturating_add(side)
            .min(self.at.0.saturating_add(self.width));
        let y1 = y
            .saturating_add(side)
            .min(self.at.1.saturating_add(self.height));
        let (x0, y0) = (x.max(self.at.0), y.max(self.at.1));
        if x0 >= x1 || y0 >= y1 {
            // Most dots of a zoomed-out frame miss the template.
            return None;
        }
        let mut counts = [0u32; 256];
        for py in y0..y1 {
            for px in x0..x1 {
                if let Some(c) = self.wants(px, py) {
                    counts[usize::from(c)] += 1;
                }
            }
        }
        let (i, &n) = counts.iter().enumerate().rev().max_by_key(|&(_, n)| *n)?;
        (n > 0).then_some(i as u8)
    }

    /// Pixels the canvas still has to change to match.
    pub fn left(&self) -> usize {
        self.left
    }

    /// Counts the differing pixels of `canvas` afresh.
    pub fn recount(&mut self, canvas: &Canvas) {
        self.left = self.differing(canvas).count();
    }

    /// Pixel `(x, y)` changed from `old` to `new`: the count follows.
    pub fn changed(&mut self, x: u16, y: u16, old: u8, new: u8) {
        let Some(want) = self.wants(x, y) else {
            return;
        };
        match (old == want, new == want) {
            (true, false) => self.left += 1,
            (false, true) => self.left = self.left.saturating_sub(1),
            _ => {}
        }
    }

    /// Every pixel of `canvas` that differs from the template, in reading
    /// order.
    fn differing<'a>(&'a self, canvas: &'a Canvas) -> impl Iterator<Item = (u16, u16)> + 'a {
        let x1 = self.at.0.saturating_add(self.width).min(canvas.width);
        let y1 = self.at.1.saturating_add(self.height).min(canvas.height);
        (self.at.1..y1).flat_map(move |y| {
            (self.at.0..x1).filter_map(move |x| {
                let want = self.wants(x, y)?;
                (canvas.get(x, y)? != want).then_some((x, y))
            })
        })
    }

    /// The next pixel after `from` (in reading order, wrapping around)
    /// that differs, or the one before it when `forward` is false.
    pub fn next_diff(
        &self,
        canvas: &Canvas,
        from: (u16, u16),
        forward: bool,
    ) -> Option<(u16, u16)> {
        let key = |(x, y): (u16, u16)| (y, x);
        if forward {
            let mut first = None;
            for p in self.differing(canvas) {
                if key(p) > key(from) {
                    return Some(p);
                }
                first.get_or_insert(p);
            }
            first
        } else {
            let mut before = None;
            let mut last = None;
            for p in self.differing(canvas) {
                if key(p) < key(from) {
                    before = Some(p);
                }
                last = Some(p);
            }
            before.or(last)
        }
    }
}

/// The palette index nearest to `rgb` (squared RGB distance).
fn nearest(palette: &[[u8; 3]], rgb: [u8; 3]) -> Option<u8> {
    let d = |c: &[u8; 3]| -> u32 {
        (0..3)
            .map(|i| (i32::from(c[i]) - i32::from(rgb[i])).unsigned_abs().pow(2))
            .sum()
    };
    palette
        .iter()
        .enumerate()
        .min_by_key(|(_, c)| d(c))
        .map(|(i, _)| i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::testing::snapshot;
    use crate::protocol::{PALETTE, Pixel};

    fn palette() -> Vec<[u8; 3]> {
        PALETTE.iter().map(|c| c.rgb).collect()
    }

    fn red_bar() -> Image {
        // Three pixels: near red, transparent, pure blue-ish.
        Image {
            name: "bar.png".into(),
            width: 3,
            height: 1,
            pixels: vec![Some([250, 10, 10]), None, Some([0, 0, 230])],
        }
    }

    #[test]
    fn pixels_map_to_the_nearest_palette_colour_and_transparent_ones_to_none() {
        let t = Template::new(red_bar(), (10, 20), &palette());
        assert_eq!(t.wants(10, 20), Some(5), "red");
        assert_eq!(t.wants(11, 20), None);
        assert_eq!(t.wants(12, 20), Some(13), "darkblue");
        assert_eq!(t.wants(9, 20), None);
        assert_eq!(t.wants(13, 20), None);
    }

    #[test]
    fn the_count_follows_the_canvas_and_next_wraps_around() {
        let mut canvas = Canvas::from_snapshot(&snapshot(1, 64, 64, 0));
        let mut t = Template::new(red_bar(), (10, 20), &palette());
        t.recount(&canvas);
        assert_eq!(t.left(), 2);
        assert_eq!(t.next_diff(&canvas, (0, 0), true), Some((10, 20)));
        assert_eq!(t.next_diff(&canvas, (10, 20), true), Some((12, 20)));
        assert_eq!(
            t.next_diff(&canvas, (12, 20), true),
            Some((10, 20)),
            "wraps"
        );
        assert_eq!(t.next_diff(&canvas, (12, 20), false), Some((10, 20)));
        assert_eq!(
            t.next_diff(&canvas, (10, 20), false),
            Some((12, 20)),
            "wraps"
        );
        let name = std::sync::Arc::from("bob");
        canvas.apply(&Pixel {
            seq: 1,
            x: 10,
            y: 20,
            color: 5,
            name,
        });
        t.changed(10, 20, 0, 5);
        assert_eq!(t.left(), 1);
        t.changed(10, 20, 5, 3);
        assert_eq!(t.left(), 2);
        t.changed(11, 20, 0, 3);
        assert_eq!(t.left(), 2, "a transparent pixel is anyone's");
    }
}
