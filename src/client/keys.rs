//! The one key table. The handler looks keys up here and the help overlay
//! prints these same rows, so the two cannot disagree.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// How far Shift moves the cursor.
pub const FAST: i32 = 8;

/// What a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Move the cursor by this many pixels.
    Move {
        /// Columns (negative: left).
        dx: i32,
        /// Rows (negative: up).
        dy: i32,
    },
    /// Move the view and the cursor by this many screens.
    Page {
        /// Screens right (negative: left).
        dx: i32,
        /// Screens down (negative: up).
        dy: i32,
    },
    /// Zoom in one step.
    ZoomIn,
    /// Zoom out one step, at most until the whole canvas shows.
    ZoomOut,
    /// Centre the view on the cursor.
    Centre,
    /// Ask for a pixel to go to.
    GoTo,
    /// Show or hide the overview.
    Overview,
    /// Select the colour of the pixel under the cursor (eyedropper).
    Pick,
    /// Show or hide the template's ghost.
    Ghost,
    /// Go to the next pixel that differs from the template and select
    /// the colour it wants.
    NextDiff,
    /// The same, backwards.
    PrevDiff,
    /// Show or hide the chat's timestamps.
    Timestamps,
    /// Chat: complete the name or command before the cursor.
    Complete,
    /// Chat: the previous line sent.
    HistoryPrev,
    /// Chat: the next line sent, or back to the line being typed.
    HistoryNext,
    /// Place the selected colour at the cursor.
    Place,
    /// Select the previous palette colour.
    PrevColor,
    /// Select the next palette colour.
    NextColor,
    /// Select the colour with this palette index.
    PickColor(u8),
    /// Focus the chat input.
    Chat,
    /// Focus the chat input with a `/` typed.
    Command,
    /// Scroll the chat back.
    ScrollUp,
    /// Scroll the chat forward.
    ScrollDown,
    /// Follow the newest chat lines again.
    Follow,
    /// Show the help overlay.
    Help,
    /// Leave.
    Quit,
    /// Chat: send the line.
    Send,
    /// Chat: back to drawing.
    Back,
    /// Ask who placed the pixel under the cursor (`WHOSE`).
    Whose,
    /// Reconnect now: after an admin's kick, or instead of waiting out the
    /// reconnect countdown.
    Reconnect,
    /// Login screen: the other field (name, password).
    NextField,
}

/// A key, as the table matches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// The key alone. For characters Shift does not count, because it is
    /// part of the character (`?`, `H`).
    Key(KeyCode),
    /// The key with Shift.
    Shift(KeyCode),
    /// A letter with Ctrl.
    Ctrl(char),
    /// Another key with Ctrl (arrows).
    Ctrl2(KeyCode),
    /// `0-9` and `a-f`: the palette index as a hex digit, the same digit
    /// that stands for the colour in the text mode's `CANVAS` rows.
    HexDigit,
}

impl Pattern {
    /// The action `key` triggers through this pattern, if it matches.
    fn matches(self, key: &KeyEvent, action: Action) -> Option<Action> {
        let mods = key.modifiers;
        let hit = match self {
            Pattern::Key(code @ KeyCode::Char(_)) => {
                key.code == code && mods.difference(KeyModifiers::SHIFT).is_empty()
            }
            Pattern::Key(code) => key.code == code && mods.is_empty(),
            Pattern::Shift(code) => key.code == code && mods == KeyModifiers::SHIFT,
            Pattern::Ctrl(c) => key.code == KeyCode::Char(c) && mods == KeyModifiers::CONTROL,
            Pattern::Ctrl2(code) => key.code == code && mods == KeyModifiers::CONTROL,
            Pattern::HexDigit => {
                return match key.code {
                    KeyCode::Char(c @ ('0'..='9' | 'a'..='f')) if mods.is_empty() => {
                        c.to_digit(16).map(|d| Action::PickColor(d as u8))
                    }
                    _ => None,
                };
            }
        };
        hit.then_some(action)
    }
}

/// One key and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// The key.
    pub pattern: Pattern,
    /// What it does.
    pub action: Action,
}

/// One line of the help: how the keys are written, what they do, and the
/// bindings behind them. A row without bindings documents keys another
/// component handles (the line editor's).
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The keys as the help shows them.
    pub keys: &'static str,
    /// What they do.
    pub help: &'static str,
    /// The keys as the handler matches them.
    pub bindings: &'static [Binding],
}

const fn b(pattern: Pattern, action: Action) -> Binding {
    Binding { pattern, action }
}

const fn mv(dx: i32, dy: i32) -> Action {
    Action::Move { dx, dy }
}

const fn page(dx: i32, dy: i32) -> Action {
    Action::Page { dx, dy }
}

use KeyCode::{BackTab, Char, Down, End, Enter, Esc, Left, PageDown, PageUp, Right, Tab, Up};
use Pattern::{Ctrl, Ctrl2, HexDigit, Key, Shift};

/// Keys that work on every screen.
pub const ANYWHERE: &[Row] = &[Row {
    keys: "Ctrl-C",
    help: "quit, from anywhere",
    bindings: &[b(Ctrl('c'), Action::Quit)],
}];

/// Keys while drawing (the canvas has the focus).
pub const DRAWING: &[Row] = &[
    Row {
        keys: "←↓↑→ h j k l",
        help: "move the cursor",
        bindings: &[
            b(Key(Left), mv(-1, 0)),
            b(Key(Down), mv(0, 1)),
            b(Key(Up), mv(0, -1)),
            b(Key(Right), mv(1, 0)),
            b(Key(Char('h')), mv(-1, 0)),
            b(Key(Char('j')), mv(0, 1)),
            b(Key(Char('k')), mv(0, -1)),
            b(Key(Char('l')), mv(1, 0)),
        ],
    },
    Row {
        keys: "Shift+←↓↑→ HJKL",
        help: "move 8 times as far",
        bindings: &[
            b(Shift(Left), mv(-FAST, 0)),
            b(Shift(Down), mv(0, FAST)),
            b(Shift(Up), mv(0, -FAST)),
            b(Shift(Right), mv(FAST, 0)),
            b(Key(Char('H')), mv(-FAST, 0)),
            b(Key(Char('J')), mv(0, FAST)),
            b(Key(Char('K')), mv(0, -FAST)),
            b(Key(Char('L')), mv(FAST, 0)),
        ],
    },
    Row {
        keys: "Ctrl+←↓↑→ ^F ^B",
        help: "page the view by a screen",
        bindings: &[
            b(Ctrl2(Left), page(-1, 0)),
            b(Ctrl2(Down), page(0, 1)),
            b(Ctrl2(Up), page(0, -1)),
            b(Ctrl2(Right), page(1, 0)),
            b(Ctrl('f'), page(0, 1)),
            b(Ctrl('b'), page(0, -1)),
        ],
    },
    Row {
        keys: "+ = -",
        help: "zoom in, out (to all of it)",
        bindings: &[
            b(Key(Char('+')), Action::ZoomIn),
            b(Key(Char('=')), Action::ZoomIn),
            b(Key(Char('-')), Action::ZoomOut),
        ],
    },
    Row {
        keys: "z",
        help: "centre the view on the cursor",
        bindings: &[b(Key(Char('z')), Action::Centre)],
    },
    Row {
        keys: "g",
        help: "go to a pixel: type x y, Enter",
        bindings: &[b(Key(Char('g')), Action::GoTo)],
    },
    Row {
        keys: "m",
        help: "overview (minimap) on/off",
        bindings: &[b(Key(Char('m')), Action::Overview)],
    },
    Row {
        keys: "Space",
        help: "place the selected colour",
        bindings: &[b(Key(Char(' ')), Action::Place)],
    },
    Row {
        keys: "[ ]  0-9 a-f",
        help: "colour: prev/next, or by key",
        bindings: &[
            b(Key(Char('[')), Action::PrevColor),
            b(Key(Char(']')), Action::NextColor),
            b(HexDigit, Action::PickColor(0)),
        ],
    },
    Row {
        keys: "i",
        help: "eyedropper: take the colour here",
        bindings: &[b(Key(Char('i')), Action::Pick)],
    },
    Row {
        keys: "t",
        help: "template ghost on/off",
        bindings: &[b(Key(Char('t')), Action::Ghost)],
    },
    Row {
        keys: "n N",
        help: "to the next/prev template pixel",
        bindings: &[
            b(Key(Char('n')), Action::NextDiff),
            b(Key(Char('N')), Action::PrevDiff),
        ],
    },
    Row {
        keys: "T",
        help: "chat timestamps on/off",
        bindings: &[b(Key(Char('T')), Action::Timestamps)],
    },
    Row {
        keys: "w",
        help: "who placed the pixel here",
        bindings: &[b(Key(Char('w')), Action::Whose)],
    },
    Row {
        keys: "Enter",
        help: "chat: type a message",
        bindings: &[b(Key(Enter), Action::Chat)],
    },
    Row {
        keys: "/",
        help: "chat: type a /command",
        bindings: &[b(Key(Char('/')), Action::Command)],
    },
    Row {
        keys: "PgUp PgDn End",
        help: "scroll the chat; End follows",
        bindings: &[
            b(Key(PageUp), Action::ScrollUp),
            b(Key(PageDown), Action::ScrollDown),
            b(Key(End), Action::Follow),
        ],
    },
    Row {
        keys: "r",
        help: "reconnect now (when offline)",
        bindings: &[b(Key(Char('r')), Action::Reconnect)],
    },
    Row {
        keys: "?",
        help: "this help",
        bindings: &[b(Key(Char('?')), Action::Help)],
    },
    Row {
        keys: "q",
        help: "quit",
        bindings: &[b(Key(Char('q')), Action::Quit)],
    },
];

/// Keys while the chat input has the focus.
pub const CHATTING: &[Row] = &[
    Row {
        keys: "Enter",
        help: "send; an empty line goes back",
        bindings: &[b(Key(Enter), Action::Send)],
    },
    Row {
        keys: "Esc",
        help: "back to drawing, text kept",
        bindings: &[b(Key(Esc), Action::Back)],
    },
    Row {
        keys: "Tab",
        help: "complete a name or /command",
        bindings: &[b(Key(Tab), Action::Complete)],
    },
    Row {
        keys: "↑ ↓",
        help: "lines sent before",
        bindings: &[
            b(Key(Up), Action::HistoryPrev),
            b(Key(Down), Action::HistoryNext),
        ],
    },
    Row {
        keys: "PgUp PgDn",
        help: "scroll the chat",
        bindings: &[
            b(Key(PageUp), Action::ScrollUp),
            b(Key(PageDown), Action::ScrollDown),
        ],
    },
    Row {
        keys: "← → Home End",
        help: "edit; Ctrl-W/U delete",
        bindings: &[],
    },
];

/// Keys while a prompt (`g`'s go to) takes a line.
pub const PROMPT: &[Row] = &[
    Row {
        keys: "Enter",
        help: "go",
        bindings: &[b(Key(Enter), Action::Send)],
    },
    Row {
        keys: "Esc",
        help: "cancel",
        bindings: &[b(Key(Esc), Action::Back)],
    },
];

/// Keys on the login screen (the first screen, when a name or password
/// is missing or was refused). Everything else edits the focused field.
pub const LOGIN: &[Row] = &[
    Row {
        keys: "Enter",
        help: "next field, or join",
        bindings: &[b(Key(Enter), Action::Send)],
    },
    Row {
        keys: "Tab ↑ ↓",
        help: "switch between name and password",
        bindings: &[
            b(Key(Tab), Action::NextField),
            b(Key(BackTab), Action::NextField),
            b(Shift(BackTab), Action::NextField),
            b(Key(Up), Action::NextField),
            b(Key(Down), Action::NextField),
        ],
    },
    Row {
        keys: "Esc",
        help: "quit",
        bindings: &[b(Key(Esc), Action::Quit)],
    },
];

/// Keys while the help is up; any other key closes it.
pub const HELP: &[Row] = &[Row {
    keys: "↓ ↑ j k PgDn PgUp",
    help: "scroll the help",
    bindings: &[
        b(Key(Down), Action::ScrollDown),
        b(Key(Char('j')), Action::ScrollDown),
        b(Key(PageDown), Action::ScrollDown),
        b(Key(Up), Action::ScrollUp),
        b(Key(Char('k')), Action::ScrollUp),
        b(Key(PageUp), Action::ScrollUp),
    ],
}];

/// The most lines the help can have (in one column): how far it scrolls.
pub fn help_len() -> u16 {
    let rows = DRAWING.len() + ANYWHERE.len() + CHATTING.len() + MOUSE.len() + COMMANDS.len();
    // Headings, the colours (two a line) and the closing note.
    (rows + 5 + 8 + 1) as u16
}

/// What the mouse does, for the help.
pub const MOUSE: &[(&str, &str)] = &[
    ("click, drag", "place, paint a line"),
    ("right click", "eyedropper"),
    ("wheel on canvas", "zoom in, out"),
    ("click overview", "go there"),
    ("click a colour", "select it"),
    ("wheel on chat", "scroll the chat"),
];

/// Chat commands, for the help.
pub const COMMANDS: &[(&str, &str)] = &[
    ("/tell NAME text", "direct msg"),
    ("/who", "who is online"),
    ("/template F X,Y", "overlay a png"),
    ("/template off", "remove it"),
    ("/kick NAME", "admin: kick"),
    ("/ban NAME", "admin: ban"),
    ("/rollback N [MIN]", "admin: undo N"),
    ("/fill X Y X Y C", "admin: fill"),
    ("/help", "this help"),
    ("/quit", "quit"),
];

/// The action `key` triggers in `rows`, if any.
pub fn lookup(rows: &[Row], key: &KeyEvent) -> Option<Action> {
    rows.iter()
        .flat_map(|row| row.bindings)
        .find_map(|binding| binding.pattern.matches(key, binding.action))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn moves_and_fast_moves() {
        let none = KeyModifiers::NONE;
        assert_eq!(lookup(DRAWING, &key(Char('h'), none)), Some(mv(-1, 0)));
        assert_eq!(lookup(DRAWING, &key(Down, none)), Some(mv(0, 1)));
        assert_eq!(
            lookup(DRAWING, &key(Left, KeyModifiers::SHIFT)),
            Some(mv(-FAST, 0))
        );
        // Terminals report Shift+l as 'L', with or without the flag.
        assert_eq!(
            lookup(DRAWING, &key(Char('L'), KeyModifiers::SHIFT)),
            Some(mv(FAST, 0))
        );
        assert_eq!(lookup(DRAWING, &key(Char('L'), none)), Some(mv(FAST, 0)));
        assert_eq!(
            lookup(DRAWING, &key(Left, KeyModifiers::CONTROL)),
            Some(page(-1, 0))
        );
        assert_eq!(lookup(DRAWING, &key(Left, KeyModifiers::ALT)), None);
    }

    #[test]
    fn hex_digits_pick_colours() {
        let none = KeyModifiers::NONE;
        assert_eq!(
            lookup(DRAWING, &key(Char('0'), none)),
            Some(Action::PickColor(0))
        );
        assert_eq!(
            lookup(DRAWING, &key(Char('5'), none)),
            Some(Action::PickColor(5))
        );
        assert_eq!(
            lookup(DRAWING, &key(Char('f'), none)),
            Some(Action::PickColor(15))
        );
        assert_eq!(lookup(DRAWING, &key(Char('g'), none)), Some(Action::GoTo));
        assert_eq!(
            lookup(DRAWING, &key(Char('?'), KeyModifiers::SHIFT)),
            Some(Action::Help)
        );
        assert_eq!(
            lookup(ANYWHERE, &key(Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(lookup(ANYWHERE, &key(Char('c'), none)), None);
    }

    #[test]
    fn whose_reconnect_and_the_login_fields() {
        let none = KeyModifiers::NONE;
        assert_eq!(lookup(DRAWING, &key(Char('w'), none)), Some(Action::Whose));
        assert_eq!(
            lookup(DRAWING, &key(Char('r'), none)),
            Some(Action::Reconnect)
        );
        assert_eq!(lookup(LOGIN, &key(Tab, none)), Some(Action::NextField));
        assert_eq!(
            lookup(LOGIN, &key(BackTab, KeyModifiers::SHIFT)),
            Some(Action::NextField)
        );
        assert_eq!(lookup(LOGIN, &key(Enter, none)), Some(Action::Send));
        // Letters are typed into the fields, q included.
        assert_eq!(lookup(LOGIN, &key(Char('q'), none)), None);
    }

    #[test]
    fn the_readme_documents_every_key_and_command() {
        let readme = include_str!("../../README.md");
        let section = &readme[readme.find("## Terminal client").expect("the section")..];
        for row in DRAWING.iter().chain(CHATTING).chain(LOGIN).chain(ANYWHERE) {
            for binding in row.bindings {
                if let Key(Char(c)) = binding.pattern {
                    let shown = match c {
                        ' ' => "`Space`".to_string(),
                        c => format!("`{c}`"),
                    };
                    assert!(section.contains(&shown), "README lacks the key {shown}");
                }
            }
        }
        for (command, _) in COMMANDS {
            let word = command.split(' ').next().unwrap();
            assert!(
                section.contains(&format!("`{word}")),
                "README lacks {command}"
            );
        }
    }

    #[test]
    fn no_key_means_two_things_in_one_context() {
        for rows in [DRAWING, CHATTING, LOGIN, PROMPT, HELP] {
            let bindings: Vec<&Binding> = rows
                .iter()
                .chain(ANYWHERE)
                .flat_map(|r| r.bindings)
                .collect();
            for (i, a) in bindings.iter().enumerate() {
                for other in &bindings[i + 1..] {
                    assert_ne!(a.pattern, other.pattern, "{:?} is bound twice", a.pattern);
                }
            }
        }
        // The hex digits must not shadow a letter binding.
        for row in DRAWING {
            for binding in row.bindings {
                if let Key(Char(c)) = binding.pattern {
                    assert!(!matches!(c, '0'..='9' | 'a'..='f'), "{c} is a colour key");
                }
            }
        }
    }
}
