//! Import sources with skopeo's transport names (being written).

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {}
