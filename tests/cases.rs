//! One test per rule file, generated from `cards/rules/`: `cargo test --test cases` names the
//! rule whose fire or must-not-fire cases fail, and `cargo test --test cases -- <rule-id>` runs
//! one. Adding a rule file adds a test; no Rust changes. (Every case also runs over HTTP in
//! `tests/api/rules.rs`.)

use leg_cramp_cds::catalog::Catalog;
use leg_cramp_cds::protocol::SchemaSet;
use leg_cramp_cds::service::cases::run_case;
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::Path;
use std::sync::Arc;

fn main() {
    let args = Arguments::from_args();
    let cards = Path::new(env!("CARGO_MANIFEST_DIR")).join("cards");
    let schemas = Arc::new(SchemaSet::compile().expect("embedded schemas compile"));
    let catalog = Arc::new(Catalog::load(&cards, &schemas).unwrap_or_else(|e| panic!("cards/ does not load:\n{e}")));
    let trials = (0..catalog.rules.rules.len())
        .map(|i| {
            let (catalog, schemas) = (catalog.clone(), schemas.clone());
            let name = catalog.rules.rules[i].id.clone();
            Trial::test(name, move || {
                let rule = &catalog.rules.rules[i];
                let failures: Vec<String> = rule
                    .tests
                    .iter()
                    .filter_map(|case| {
                        run_case(&catalog, &schemas, rule, case).err().map(|e| format!("{}: {e}", case.name))
                    })
                    .collect();
                if failures.is_empty() {
                    Ok(())
                } else {
                    Err(Failed::from(failures.join("\n")))
                }
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
