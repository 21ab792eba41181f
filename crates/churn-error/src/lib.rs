//! The one classification every churn crate's error reports. Each crate's error enum has a
//! `kind()` that returns one of these (delegating to the error it wraps, so wrapping never
//! changes the kind), and the binary maps kinds to exit codes. It lives in a crate of its own,
//! with no dependencies, so that pure crates (the models) share it without depending on the
//! lake or the query engine.

/// Who has to act on an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The command line, a configuration, pipeline or model file, a feature SQL file: the
    /// user's settings are wrong.
    Config,
    /// The data cannot support what was asked (too many rejected rows, too little history,
    /// labels not observable yet, a corrupt registry entry).
    Data,
    /// Another writer holds the lake: nothing is wrong, retry later (or wait longer).
    Busy,
    /// Anything else: I/O, the object store, the query engine running out of resources, a bug.
    Internal,
}
