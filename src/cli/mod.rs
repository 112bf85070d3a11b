//! The command line, defined once: `table` lists every command with its options and operands
//! (and holds the help text, which a test keeps in agreement with it), `parse` reads the
//! arguments against it, `completion` generates the bash and zsh completion scripts from it.
//! `main.rs` turns what `parse` found into the command it runs.

pub mod completion;
pub mod parse;
pub mod table;
