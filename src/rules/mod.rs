//! The rule engine: value sets, conventions and rules loaded from the cards directory
//! ([`book`]), trigger expressions ([`expr`]), and their evaluation over patient facts
//! ([`eval`]). Clinical knowledge is data; this module holds only mechanisms.

pub mod book;
pub mod card_policy;
mod compile_rule;
pub mod eval;
pub mod expr;
pub mod lab_orders;
pub mod merged;
pub mod model;
mod observed;
mod order;
mod predicates;
mod resolve;

pub use book::RuleBook;
pub use eval::{evaluate, named_facts_holding, Evidence, Finding};
