//! Word wrapping of tagged text to a width in terminal cells. The chat
//! pane counts its rows with [`wrap`] to scroll, and the drawing draws
//! exactly the rows [`wrap`] returns, so the two cannot disagree.

use ratatui::buffer::CellWidth;
use unicode_segmentation::UnicodeSegmentation;

/// One grapheme of the input, by where it is.
#[derive(Clone, Copy)]
struct Grapheme {
    piece: usize,
    start: usize,
    end: usize,
    width: u16,
    space: bool,
}

/// Wraps one line, made of `pieces` (a tag for how a piece is drawn, and
/// its text), into rows at most `width` cells wide.
///
/// Rows break between words, and the spaces at a break are dropped; a
/// word breaks only when it is wider than a row, and then starts on a row
/// of its own. As when ratatui draws text, widths are counted per
/// grapheme cluster, and control characters and graphemes wider than a row
/// are left out. A line is at least one row, even when empty.
pub fn wrap<'a, T: Copy>(pieces: &[(T, &'a str)], width: u16) -> Vec<Vec<(T, &'a str)>> {
    let graphemes = pieces.iter().enumerate().flat_map(|(piece, (_, text))| {
        text.grapheme_indices(true)
            .filter(|(_, g)| !g.contains(char::is_control))
            .map(move |(start, g)| Grapheme {
                piece,
                start,
                end: start + g.len(),
                width: g.cell_width(),
                space: is_space(g),
            })
    });
    let mut rows: Vec<Vec<Grapheme>> = Vec::new();
    let mut row: Vec<Grapheme> = Vec::new();
    let mut row_width = 0u16;
    let mut word: Vec<Grapheme> = Vec::new();
    let mut spaces: Vec<Grapheme> = Vec::new();
    for g in graphemes.filter(|g| g.width <= width) {
        if g.space && !word.is_empty() {
            place(
                &mut word,
                &mut spaces,
                &mut row,
                &mut row_width,
                &mut rows,
                width,
            );
        }
        if g.space {
            spaces.push(g);
        } else {
            word.push(g);
        }
    }
    place(
        &mut word,
        &mut spaces,
        &mut row,
        &mut row_width,
        &mut rows,
        width,
    );
    // Spaces that end the line stay where they fit.
    for g in spaces {
        if row_width + g.width > width {
            break;
        }
        row_width += g.width;
        row.push(g);
    }
    if !row.is_empty() || rows.is_empty() {
        rows.push(row);
    }
    rows.into_iter().map(|row| join(pieces, &row)).collect()
}

/// Puts the `spaces` and the `word` after them on the row, or the word on
/// the next row(s) when they do not fit.
fn place(
    word: &mut Vec<Grapheme>,
    spaces: &mut Vec<Grapheme>,
    row: &mut Vec<Grapheme>,
    row_width: &mut u16,
    rows: &mut Vec<Vec<Grapheme>>,
    width: u16,
) {
    if word.is_empty() {
        return;
    }
    let spaces_width: u16 = spaces.iter().map(|g| g.width).sum();
    let word_width: u16 = word.iter().map(|g| g.width).sum();
    if u32::from(*row_width) + u32::from(spaces_width) + u32::from(word_width) <= u32::from(width) {
        *row_width += spaces_width + word_width;
        row.append(spaces);
        row.append(word);
        return;
    }
    spaces.clear();
    if !row.is_empty() {
        rows.push(std::mem::take(row));
        *row_width = 0;
    }
    for g in word.drain(..) {
        if *row_width + g.width > width {
            rows.push(std::mem::take(row));
            *row_width = 0;
        }
        *row_width += g.width;
        row.push(g);
    }
}

/// Whitespace as ratatui's wrapping sees it: a zero-width space breaks,
/// a no-break space does not.
fn is_space(g: &str) -> bool {
    g == "\u{200B}" || (g.chars().all(char::is_whitespace) && g != "\u{00A0}")
}

/// A row of graphemes as pieces: neighbours from the same piece are one.
fn join<'a, T: Copy>(pieces: &[(T, &'a str)], row: &[Grapheme]) -> Vec<(T, &'a str)> {
    let mut out: Vec<(T, &'a str)> = Vec::new();
    let mut run: Option<(usize, usize, usize)> = None;
    for g in row {
        run = match run {
            Some((piece, start, end)) if piece == g.piece && end == g.start => {
                Some((piece, start, g.end))
            }
            Some((piece, start, end)) => {
                out.push((pieces[piece].0, &pieces[piece].1[start..end]));
                Some((g.piece, g.start, g.end))
            }
            None => Some((g.piece, g.start, g.end)),
        };
    }
    if let Some((piece, start, end)) = run {
        out.push((pieces[piece].0, &pieces[piece].1[start..end]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows as plain text.
    fn rows(text: &str, width: u16) -> Vec<String> {
        wrap(&[((), text)], width)
            .iter()
            .map(|row| row.iter().map(|(_, s)| *s).collect())
            .collect()
    }

    #[test]
    fn words_move_to_the_next_row_and_the_space_at_a_break_goes() {
        assert_eq!(
            rows("joined as alice (canvas 64x64, seq 0)", 26),
            ["joined as alice (canvas", "64x64, seq 0)"]
        );
        assert_eq!(rows("abcde fg", 5), ["abcde", "fg"]);
        assert_eq!(rows("ab cd", 5), ["ab cd"], "an exact fit is one row");
        assert_eq!(rows("ab cd ef", 5), ["ab cd", "ef"]);
        assert_eq!(rows("", 5), [""], "an empty line is a row");
        assert_eq!(rows("  indented", 20), ["  indented"]);
    }

    #[test]
    fn a_word_wider_than_a_row_breaks_on_rows_of_its_own() {
        assert_eq!(
            rows("hi abcdefghijkl x", 5),
            ["hi", "abcde", "fghij", "kl x"]
        );
    }

    #[test]
    fn width_is_counted_in_cells_per_grapheme() {
        // Each CJK character takes two cells.
        assert_eq!(rows("漢字 漢字漢字", 6), ["漢字", "漢字漢", "字"]);
        // A combining accent adds no width; a family emoji is one
        // grapheme of two cells, never split.
        assert_eq!(rows("cafe\u{301} 👨‍👩‍👧 ok", 7), ["cafe\u{301} 👨‍👩‍👧", "ok"]);
        // A grapheme wider than a row is left out rather than overflow.
        assert_eq!(rows("a漢b", 1), ["a", "b"]);
        // Control characters take no room.
        assert_eq!(rows("a\tb", 2), ["ab"]);
    }

    #[test]
    fn pieces_keep_their_tags_across_a_break() {
        let line = [(1, "bob"), (2, ": "), (3, "see you there")];
        assert_eq!(
            wrap(&line, 9),
            [
                vec![(1, "bob"), (2, ": "), (3, "see")],
                vec![(3, "you there")],
            ]
        );
    }
}
