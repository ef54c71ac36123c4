//! The order rules are evaluated in: a rule comes after every rule its expressions refer to
//! (`rule_fired`), and rule-level supersession (`suppresses`) must not form a cycle.

use super::expr::Expr;
use super::model::Rule;

pub(super) fn suppression_cycle(rules: &[Rule]) -> Option<Vec<usize>> {
    // Indices in `suppresses` are positions in the file list, which is `rules` order here.
    fn visit(i: usize, rules: &[Rule], state: &mut [u8], path: &mut Vec<usize>) -> Option<Vec<usize>> {
        state[i] = 1;
        path.push(i);
        for &j in &rules[i].suppresses {
            if state[j] == 1 {
                let start = path.iter().position(|&p| p == j).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(j);
                return Some(cycle);
            }
            if state[j] == 0 {
                if let Some(c) = visit(j, rules, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state[i] = 2;
        None
    }
    let mut state = vec![0u8; rules.len()];
    (0..rules.len()).find_map(|i| if state[i] == 0 { visit(i, rules, &mut state, &mut Vec::new()) } else { None })
}

fn rule_dependencies(rule: &Rule) -> Vec<usize> {
    let mut deps = Vec::new();
    rule.trigger.rule_refs(&mut deps);
    rule.escalations.iter().for_each(|(_, e, _)| e.rule_refs(&mut deps));
    rule.variants.iter().for_each(|(e, _, _)| e.rule_refs(&mut deps));
    rule.notes.iter().for_each(|(e, _)| e.rule_refs(&mut deps));
    rule.citation_when.iter().flatten().for_each(|e| e.rule_refs(&mut deps));
    rule.context_evidence.iter().for_each(|e| e.rule_refs(&mut deps));
    rule.finding_from.iter().for_each(|e| e.rule_refs(&mut deps));
    deps
}

/// Topological order over `rule_fired` references; `Err(i)` names a rule in a cycle.
pub(super) fn evaluation_order(rules: &[Rule]) -> Result<Vec<usize>, usize> {
    let deps: Vec<Vec<usize>> = rules.iter().map(rule_dependencies).collect();
    let mut order = Vec::with_capacity(rules.len());
    let mut state = vec![0u8; rules.len()];
    fn visit(i: usize, deps: &[Vec<usize>], state: &mut [u8], order: &mut Vec<usize>) -> Result<(), usize> {
        match state[i] {
            2 => return Ok(()),
            1 => return Err(i),
            _ => {}
        }
        state[i] = 1;
        for &d in &deps[i] {
            visit(d, deps, state, order)?;
        }
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..rules.len() {
        visit(i, &deps, &mut state, &mut order)?;
    }
    Ok(order)
}

/// Puts rules in evaluation order and renumbers every rule index they hold.
pub(super) fn reorder(rules: Vec<Rule>, order: &[usize]) -> Vec<Rule> {
    let mut new_pos = vec![0usize; rules.len()];
    for (pos, &old) in order.iter().enumerate() {
        new_pos[old] = pos;
    }
    let mut slots: Vec<Option<Rule>> = rules.into_iter().map(Some).collect();
    order
        .iter()
        .map(|&old| {
            let mut r = slots[old].take().expect("each rule once");
            r.suppresses.iter_mut().for_each(|s| *s = new_pos[*s]);
            renumber(&mut r.trigger, &new_pos);
            r.escalations.iter_mut().for_each(|(_, e, _)| renumber(e, &new_pos));
            r.variants.iter_mut().for_each(|(e, _, _)| renumber(e, &new_pos));
            r.notes.iter_mut().for_each(|(e, _)| renumber(e, &new_pos));
            r.citation_when.iter_mut().flatten().for_each(|e| renumber(e, &new_pos));
            r.context_evidence.iter_mut().for_each(|e| renumber(e, &new_pos));
            r.finding_from.iter_mut().for_each(|e| renumber(e, &new_pos));
            r
        })
        .collect()
}

fn renumber(e: &mut Expr, new_pos: &[usize]) {
    match e {
        Expr::All(xs) | Expr::Any(xs) => xs.iter_mut().for_each(|x| renumber(x, new_pos)),
        Expr::Not(x) => renumber(x, new_pos),
        Expr::RuleFired(i) => *i = new_pos[*i],
        _ => {}
    }
}
