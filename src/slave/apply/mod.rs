//! Applying changes to the data directory: [`plan`] (pure) decides what wins and in which
//! order, [`confine`] keeps the writes inside their bounds, [`execute`] writes them durably.

mod confine;
mod execute;
mod plan;

pub use confine::{check, refuse};
pub use execute::{execute, remove_leftovers};
pub use plan::{plan, Equal, Rejection, Step};

#[cfg(test)]
mod tests;
