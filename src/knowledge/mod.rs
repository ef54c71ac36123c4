//! Knowledge the cards directory holds besides the rules themselves, in the form the rest of
//! the service reads it. This layer sits below facts and rules: it never imports them (nor
//! cards or http), so both can depend on it.
//!
//! - [`load`]: reading the directory's JSON files, and `LoadError` (`file: pointer: message`).
//! - [`units`]: units of measure through UCUM, with the table of non-UCUM spellings
//!   (`cards/units.json`) and each analyte's molar mass, valence and conventional maps.
//! - [`valueset`]: value sets (codes, text phrases, units, salts) and their index.
//! - [`vocabulary`] and [`phrases`]: medication brands, routes and the phrase index.
//! - [`conventions`]: which statuses count, pregnancy derivation, named facts.
//! - [`placeholder`] and [`numbers`]: what a summary placeholder may hold and how values are
//!   written.

pub mod conventions;
pub mod load;
pub mod numbers;
pub mod phrases;
pub mod placeholder;
pub mod units;
pub mod valueset;
pub mod vocabulary;
