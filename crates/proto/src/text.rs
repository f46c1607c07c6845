//! Quoting untrusted input in error messages.
//!
//! An error message may name what it refused (a path, a command, a mode),
//! but never whole: a 1 MB path must not come back as a 1 MB error on
//! either side of the wire. [`short`] keeps a prefix of at most
//! [`QUOTE_MAX`] characters and marks the cut with `…`; [`cap`] does the
//! same for a whole message with a larger bound ([`MESSAGE_MAX`]), the
//! last line of defence where a message is sent or received.

/// Characters of a piece of input an error message quotes.
pub const QUOTE_MAX: usize = 96;

/// Characters of a JSON decoder's error text (which quotes the offending
/// value) in [`crate::messages::MessageError`].
pub const JSON_ERROR_MAX: usize = 160;

/// Characters of a whole error message sent or accepted over the wire.
pub const MESSAGE_MAX: usize = 1024;

/// `s` cut to at most [`QUOTE_MAX`] characters, with `…` when it was cut.
pub fn short(s: &str) -> String {
    cut(s, QUOTE_MAX)
}

/// `s` cut to at most [`MESSAGE_MAX`] characters, with `…` when it was cut.
pub fn cap(s: &str) -> String {
    cut(s, MESSAGE_MAX)
}

/// `s` cut to at most `max` characters (at a character boundary), with `…`
/// appended when anything was cut.
pub fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((i, _)) => {
            let mut out = String::with_capacity(i + 3);
            out.push_str(&s[..i]);
            out.push('…');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_kept_whole() {
        assert_eq!(short("/etc/hosts"), "/etc/hosts");
        assert_eq!(short(""), "");
        let exact = "a".repeat(QUOTE_MAX);
        assert_eq!(short(&exact), exact);
    }

    #[test]
    fn long_input_keeps_a_prefix_and_an_ellipsis() {
        let long = "x".repeat(1 << 20);
        let s = short(&long);
        assert_eq!(s.chars().count(), QUOTE_MAX + 1);
        assert!(s.ends_with('…'));
        assert_eq!(cap(&long).chars().count(), MESSAGE_MAX + 1);
    }

    #[test]
    fn cuts_at_a_character_boundary() {
        let s = cut("ééééé", 3);
        assert_eq!(s, "ééé…");
    }
}
