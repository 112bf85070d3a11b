//! The command line, defined once: `table` lists every command with its options and operands
//! (and holds the help text, which a test keeps in agreement with it), `parse` reads the
//! arguments against it.
//! `main.rs` turns what `parse` found into the command it runs.

pub mod parse;
pub mod table;
