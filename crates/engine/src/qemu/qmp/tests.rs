use std::path::Path;

use super::migrate::shell_quote;
use super::*;

#[test]
fn quotes_paths_for_the_shell() {
    assert_eq!(
        shell_quote(Path::new("/a b/it's")).ok().as_deref(),
        Some(r"'/a b/it'\''s'")
    );
    assert!(matches!(
        shell_quote(Path::new("relative")),
        Err(QmpError::BadPath(_))
    ));
    assert!(matches!(
        shell_quote(Path::new("/x\ny")),
        Err(QmpError::BadPath(_))
    ));
    assert_eq!(
        incoming_uri(Path::new("/s/mem")).ok().as_deref(),
        Some("exec:cat '/s/mem'")
    );
}

#[test]
fn run_states_parse() {
    assert_eq!(RunState::parse("paused"), RunState::Paused);
    assert_eq!(RunState::parse("inmigrate"), RunState::InMigrate);
    assert_eq!(RunState::parse("colo"), RunState::Other("colo".to_owned()));
}
