//! How many pixels of each colour every square block of the canvas holds,
//! kept up to date pixel by pixel, so a zoomed-out frame finds the most
//! common colour of a 64 x 64 block in one lookup instead of reading 4,096
//! pixels. Blocks come in three sizes (8, 64 and 512 pixels a side); a
//! dot of another power-of-two size adds up a few of the next smaller.

/// Colours counted: the palette indexes a snapshot can carry (4 bits).
pub const COLORS: usize = 16;
/// The side of the smallest counted block.
pub const FINE: u16 = 8;
/// The sides of the coarser counted blocks.
const COARSE: [u16; 2] = [64, 512];

/// Counts per colour, one table of blocks per size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocks {
    width: u16,
    height: u16,
    /// 8 x 8 blocks: at most 64 pixels each, so a byte per colour.
    fine: Level<u8>,
    /// 64 x 64 and 512 x 512 blocks.
    coarse: [Level<u32>; 2],
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Level<T> {
    side: u16,
    cols: usize,
    counts: Vec<[T; COLORS]>,
}

impl<T: Copy + Default> Level<T> {
    fn new(side: u16, width: u16, height: u16) -> Self {
        let cols = usize::from(width.div_ceil(side));
        let rows = usize::from(height.div_ceil(side));
        Self {
            side,
            cols,
            counts: vec![[T::default(); COLORS]; cols * rows],
        }
    }

    fn index(&self, x: u16, y: u16) -> usize {
        usize::from(y / self.side) * self.cols + usize::from(x / self.side)
    }
}

impl<T> Level<T> {
    fn at(&self, bx: usize, by: usize) -> &[T; COLORS] {
        &self.counts[by * self.cols + bx]
    }
}

impl Blocks {
    /// The counts of a `width` x `height` canvas whose pixels, row by
    /// row, are `pixels`.
    pub fn new(width: u16, height: u16, pixels: &[u8]) -> Self {
        let mut fine = Level::<u8>::new(FINE, width, height);
        for (y, row) in pixels.chunks(usize::from(width).max(1)).enumerate() {
            let base = (y / usize::from(FINE)) * fine.cols;
            for (x, &c) in row.iter().enumerate() {
                fine.counts[base + x / usize::from(FINE)][usize::from(c) % COLORS] += 1;
            }
        }
        let coarse = COARSE.map(|side| {
            let mut level = Level::<u32>::new(side, width, height);
            let per = usize::from(side / FINE);
            for (i, counts) in fine.counts.iter().enumerate() {
                let (bx, by) = (i % fine.cols, i / fine.cols);
                let target = &mut level.counts[(by / per) * level.cols + bx / per];
                for (t, &n) in target.iter_mut().zip(counts) {
                    *t += u32::from(n);
                }
            }
            level
        });
        Self {
            width,
            height,
            fine,
            coarse,
        }
    }

    /// Pixel `(x, y)` changed from colour `old` to `new`.
    pub fn change(&mut self, x: u16, y: u16, old: u8, new: u8) {
        let (old, new) = (usize::from(old) % COLORS, usize::from(new) % COLORS);
        if old == new {
            return;
        }
        let i = self.fine.index(x, y);
        self.fine.counts[i][old] -= 1;
        self.fine.counts[i][new] += 1;
        for level in &mut self.coarse {
            let i = level.index(x, y);
            level.counts[i][old] -= 1;
            level.counts[i][new] += 1;
        }
    }

    /// The counts in the `side` x `side` block whose top-left pixel is
    /// `(x, y)`, for a `side` of 8 or more that is a power of two and `x`,
    /// `y` multiples of it; `None` for smaller sides (read the pixels).
    pub fn count(&self, x: u16, y: u16, side: u16) -> Option<[u32; COLORS]> {
        if side < FINE || !side.is_power_of_two() {
            return None;
        }
        let mut out = [0u32; COLORS];
        // The coarsest counted level that fits in the block.
        if let Some(level) = self.coarse.iter().rev().find(|l| l.side <= side) {
            add_blocks(level, x, y, side, self.width, self.height, &mut out, |n| n);
        } else {
            add_blocks(
                &self.fine,
                x,
                y,
                side,
                self.width,
                self.height,
                &mut out,
                u32::from,
            );
        }
        Some(out)
    }
}

/// Adds the counts of `level`'s blocks inside the `side` block at `(x, y)`.
#[allow(clippy::too_many_arguments)]
fn add_blocks<T: Copy>(
    level: &Level<T>,
    x: u16,
    y: u16,
    side: u16,
    width: u16,
    height: u16,
    out: &mut [u32; COLORS],
    widen: impl Fn(T) -> u32,
) {
    let s = usize::from(level.side);
    let bx0 = usize::from(x) / s;
    let by0 = usize::from(y) / s;
    let per = usize::from(side) / s;
    let cols = usize::from(width.div_ceil(level.side));
    let rows = usize::from(height.div_ceil(level.side));
    for by in by0..(by0 + per).min(rows) {
        for bx in bx0..(bx0 + per).min(cols) {
            for (o, &n) in out.iter_mut().zip(level.at(bx, by)) {
                *o += widen(n);
            }
        }
    }
}

/// The most common colour in `counts`; among equals, the lowest index.
/// `None` when the counts are all zero.
pub fn most_common(counts: &[u32; COLORS]) -> Option<u8> {
    let (i, &n) = counts.iter().enumerate().rev().max_by_key(|&(_, n)| *n)?;
    (n > 0).then_some(i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts read pixel by pixel, to check the tables against.
    fn direct(pixels: &[u8], width: u16, x: u16, y: u16, side: u16, height: u16) -> [u32; 16] {
        let mut out = [0; 16];
        for py in y..(y + side).min(height) {
            for px in x..(x + side).min(width) {
                out[usize::from(pixels[usize::from(py) * usize::from(width) + usize::from(px)])] +=
                    1;
            }
        }
        out
    }

    #[test]
    fn block_counts_match_the_pixels_after_changes_at_every_size() {
        let (w, h) = (1100u16, 600u16);
        let mut pixels: Vec<u8> = (0..usize::from(w) * usize::from(h))
            .map(|i| ((i * 7 + i / 13) % 16) as u8)
            .collect();
        let mut blocks = Blocks::new(w, h, &pixels);
        for (x, y, c) in [(0, 0, 5u8), (1099, 599, 3), (515, 70, 9), (512, 64, 9)] {
            let i = usize::from(y) * usize::from(w) + usize::from(x);
            blocks.change(x, y, pixels[i], c);
            pixels[i] = c;
        }
        for side in [8u16, 16, 32, 64, 128, 256, 512, 1024] {
            for (x, y) in [(0, 0), (512, 0), (1024, 512)] {
                let (x, y) = (x / side * side, y / side * side);
                assert_eq!(
                    blocks.count(x, y, side).unwrap(),
                    direct(&pixels, w, x, y, side, h),
                    "side {side} at ({x},{y})"
                );
            }
        }
        assert_eq!(blocks.count(0, 0, 4), None);
    }

    #[test]
    fn the_most_common_colour_wins_and_ties_go_to_the_lower_index() {
        let mut counts = [0; 16];
        assert_eq!(most_common(&counts), None);
        counts[5] = 3;
        counts[9] = 3;
        counts[2] = 1;
        assert_eq!(most_common(&counts), Some(5));
        counts[9] = 4;
        assert_eq!(most_common(&counts), Some(9));
    }
}
