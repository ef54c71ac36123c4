//! Knowledge the cards directory holds besides the rules themselves, in the form the rest of
//! the service reads it. This layer sits below facts and rules: it never imports them (nor
//! cards or http), so both can depend on it.
//!
//! - [`units`]: units of measure through UCUM, with the table of non-UCUM spellings
//!   (`cards/units.json`) and each analyte's molar mass, valence and conventional maps.

pub mod units;
