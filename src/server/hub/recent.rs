//! The recent placements a `--memory` server keeps for `ROLLBACK` and
//! `WHOSE x y n` (`--memory-history N`): it has no journal or archive to
//! read them from.
//!
//! Each placement takes 17 bytes (time 8, author index 4, x 2, y 2,
//! colour 1; the seq is implied by the position), in blocks of
//! [`BLOCK`] that are allocated as placements happen and dropped, oldest
//! first, once more than the capacity are held. Author names are kept
//! once each in a table. Full blocks are immutable and shared, so a
//! reader takes a [`RecentView`] under the hub lock (a few hundred
//! reference counts and the block being filled) and scans it off the lock.

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::server::storage::archive::Placement;

/// Placements per block.
pub(crate) const BLOCK: usize = 4096;
/// Bytes one placement takes in the ring.
pub(crate) const RECORD_BYTES: usize = 17;

type Record = [u8; RECORD_BYTES];

fn record(unix_ms: u64, author: u32, x: u16, y: u16, color: u8) -> Record {
    let mut r = [0u8; RECORD_BYTES];
    r[..8].copy_from_slice(&unix_ms.to_le_bytes());
    r[8..12].copy_from_slice(&author.to_le_bytes());
    r[12..14].copy_from_slice(&x.to_le_bytes());
    r[14..16].copy_from_slice(&y.to_le_bytes());
    r[16] = color;
    r
}

/// The recent placements of a `--memory` server, oldest first, with
/// consecutive seqs.
#[derive(Debug)]
pub(crate) struct Recent {
    capacity: usize,
    full: VecDeque<Arc<[Record]>>,
    current: Vec<Record>,
    /// Seq of the oldest placement held (when any is).
    first_seq: u64,
    /// Every author seen, by index; shared with views (copied on write
    /// only when a view is alive and a new author appears).
    names: Arc<Vec<Arc<str>>>,
    ids: HashMap<Arc<str>, u32>,
}

impl Recent {
    /// A ring that keeps at least `capacity` placements (up to one block
    /// more); 0 keeps none.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            full: VecDeque::new(),
            current: Vec::new(),
            first_seq: 1,
            names: Arc::new(Vec::new()),
            ids: HashMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.full.len() * BLOCK + self.current.len()
    }

    /// Records the placement `seq`, the next one after the last.
    pub fn push(&mut self, seq: u64, x: u16, y: u16, color: u8, name: &Arc<str>, unix_ms: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.len() == 0 {
            self.first_seq = seq;
        }
        debug_assert_eq!(seq, self.first_seq + self.len() as u64);
        let author = match self.ids.get(name) {
            Some(&id) => id,
            None => {
                let id = self.names.len() as u32;
                Arc::make_mut(&mut self.names).push(name.clone());
                self.ids.insert(name.clone(), id);
                id
            }
        };
        self.current.push(record(unix_ms, author, x, y, color));
        if self.current.len() == BLOCK {
            let block: Arc<[Record]> = std::mem::take(&mut self.current).into();
            self.full.push_back(block);
        }
        while self.full.len() * BLOCK > self.capacity {
            self.full.pop_front();
            self.first_seq += BLOCK as u64;
        }
    }

    /// What is held now, to read off the hub lock.
    pub fn view(&self) -> RecentView {
        RecentView {
            full: self.full.iter().cloned().collect(),
            current: self.current.clone(),
            first_seq: self.first_seq,
            names: self.names.clone(),
        }
    }
}

/// A copy of a [`Recent`] at one moment, sharing its full blocks.
#[derive(Debug)]
pub(crate) struct RecentView {
    full: Vec<Arc<[Record]>>,
    current: Vec<Record>,
    first_seq: u64,
    names: Arc<Vec<Arc<str>>>,
}

impl RecentView {
    /// Seq of the state before the oldest placement held: 0 when the ring
    /// still holds every placement since the canvas was blank.
    pub fn origin_seq(&self) -> u64 {
        self.first_seq - 1
    }

    /// Calls `f` with the placements held, newest first, until it breaks.
    pub fn for_each_rev(&self, mut f: impl FnMut(&Placement) -> ControlFlow<()>) {
        let blocks =
            std::iter::once(&self.current[..]).chain(self.full.iter().rev().map(|b| &b[..]));
        let mut seq = self.first_seq + (self.full.len() * BLOCK + self.current.len()) as u64;
        for block in blocks {
            for r in block.iter().rev() {
                seq -= 1;
                let p = Placement {
                    seq,
                    unix_ms: u64::from_le_bytes(r[..8].try_into().expect("8 bytes")),
                    x: u16::from_le_bytes([r[12], r[13]]),
                    y: u16::from_le_bytes([r[14], r[15]]),
                    color: r[16],
                    name: self
                        .names
                        .get(u32::from_le_bytes(r[8..12].try_into().expect("4 bytes")) as usize)
                        .cloned()
                        .unwrap_or_else(|| Arc::from("?")),
                };
                if f(&p).is_break() {
                    return;
                }
            }
        }
    }

    /// The last `n` placements at `(x, y)`, newest first.
    pub fn at(&self, (x, y): (u16, u16), n: usize) -> Vec<Placement> {
        let mut found = Vec::new();
        self.for_each_rev(|p| {
            if (p.x, p.y) == (x, y) {
                found.push(p.clone());
            }
            if found.len() >= n {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_keeps_the_newest_placements_and_reads_them_back_newest_first() {
        let mut r = Recent::new(2 * BLOCK);
        let names: Vec<Arc<str>> = ["al", "bob", "cy"].into_iter().map(Arc::from).collect();
        let total = 5 * BLOCK as u64 + 7;
        for seq in 1..=total {
            let x = (seq % 100) as u16;
            r.push(
                seq,
                x,
                x / 3,
                (seq % 16) as u8,
                &names[seq as usize % 3],
                seq * 10,
            );
        }
        let v = r.view();
        // Two full blocks and the one being filled: the oldest went first.
        assert_eq!(v.origin_seq(), total - 2 * BLOCK as u64 - 7);
        let mut seqs = Vec::new();
        v.for_each_rev(|p| {
            assert_eq!(
                (p.x, p.color, p.unix_ms, &*p.name),
                (
                    (p.seq % 100) as u16,
                    (p.seq % 16) as u8,
                    p.seq * 10,
                    &*names[p.seq as usize % 3]
                )
            );
            seqs.push(p.seq);
            ControlFlow::Continue(())
        });
        let want: Vec<u64> = (v.origin_seq() + 1..=total).rev().collect();
        assert_eq!(seqs, want);
        let at = v.at((5, 1), 3);
        let want: Vec<u64> = (1..=total).rev().filter(|s| s % 100 == 5).take(3).collect();
        assert_eq!(at.iter().map(|p| p.seq).collect::<Vec<_>>(), want);
        // A view is unchanged by later placements.
        r.push(total + 1, 1, 1, 1, &names[0], 0);
        let mut n = 0;
        v.for_each_rev(|_| {
            n += 1;
            ControlFlow::Continue(())
        });
        assert_eq!(n, 2 * BLOCK + 7);
    }

    #[test]
    fn a_zero_capacity_keeps_nothing() {
        let mut r = Recent::new(0);
        r.push(1, 0, 0, 1, &Arc::from("al"), 0);
        let mut n = 0;
        r.view().for_each_rev(|_| {
            n += 1;
            ControlFlow::Continue(())
        });
        assert_eq!(n, 0);
    }
}
