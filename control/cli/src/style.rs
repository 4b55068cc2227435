//! Colour for people, never for pipes: ANSI colour only when stdout is a
//! terminal and `NO_COLOR` is unset or empty (<https://no-color.org>).

use std::io::IsTerminal;

/// Whether to colour, decided once per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn for_stdout() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            color: !no_color && std::io::stdout().is_terminal(),
        }
    }

    pub const PLAIN: Style = Style { color: false };

    /// `text` wrapped in the SGR sequence `sgr` (e.g. `"1;31"`), or as is.
    pub fn paint(self, sgr: &str, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

pub const BOLD: &str = "1";
pub const DIM: &str = "2";
pub const RED: &str = "1;31";
pub const YELLOW: &str = "33";
pub const CYAN: &str = "36";
pub const GREEN: &str = "32";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paints_only_when_asked() {
        assert_eq!(Style::PLAIN.paint(RED, "error"), "error");
        let c = Style { color: true };
        assert_eq!(c.paint(RED, "error"), "\x1b[1;31merror\x1b[0m");
        assert_eq!(c.paint(RED, ""), "");
    }
}
