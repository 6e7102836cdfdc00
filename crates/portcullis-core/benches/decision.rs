//! Decision latency: one `Engine::evaluate` (slice lookup, then the fast evaluator or Cedar)
//! with 10, 100 and 1,000 policies in the tenant. Run with
//! `cargo bench -p portcullis-core --bench decision`.
//!
//! "spread": policies scoped to 100 tools (90 %) or to one agent on any tool (10 %), with
//! argument conditions — a tenant's set as it grows. "spread, Cedar": the same, but a third of
//! the tool policies are scoped `principal in Tenant` (outside the fast evaluator's subset), so
//! the called tool's slice is decided by Cedar. "one tool": every policy scoped to the tool
//! being called, the worst case slicing cannot help with.

// The allocator the `portcullis` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use portcullis_core::effect::EffectClass;
use portcullis_core::policy::{CallFacts, Engine, PolicyDocument, PolicySettings};
use portcullis_core::profile::ToolProfile;
use std::hint::black_box;
use std::time::Instant;

fn policy(i: usize, tool: &str, cedar: bool) -> String {
    match i % 3 {
        0 => format!(
            "@id(\"p{i}\") forbid (principal, action, resource == Portcullis::Tool::\"{tool}\") when {{ context.numbers.hasTag(\"amount_cents\") && context.numbers.getTag(\"amount_cents\") > {} }};\n",
            1_000_000 + i
        ),
        1 => format!(
            "@id(\"p{i}\") @hold forbid (principal, action, resource == Portcullis::Tool::\"{tool}\") when {{ context.args.hasTag(\"to\") && context.args.getTag(\"to\") like \"*@blocked{i}.test\" }};\n"
        ),
        _ if cedar => format!(
            "@id(\"p{i}\") forbid (principal in Portcullis::Tenant::\"acme\", action, resource == Portcullis::Tool::\"{tool}\") when {{ context.cost_cents > {} }};\n",
            1_000_000 + i
        ),
        _ => format!(
            "@id(\"p{i}\") forbid (principal == Portcullis::Agent::\"agent-{i}\", action, resource == Portcullis::Tool::\"{tool}\");\n"
        ),
    }
}

fn document(n: usize, spread: bool, cedar_path: bool) -> PolicyDocument {
    let mut cedar = String::new();
    for i in 0..n {
        if !spread {
            cedar.push_str(&policy(i, "billing/issue_refund", false));
        } else if i % 10 == 9 {
            cedar.push_str(&format!(
                "@id(\"p{i}\") forbid (principal == Portcullis::Agent::\"agent-{i}\", action, resource);\n"
            ));
        } else {
            cedar.push_str(&policy(
                i,
                &format!("conn{}/tool{}", i % 10, i % 100),
                cedar_path,
            ));
        }
    }
    if cedar_path {
        // At every size, one policy on the called tool outside the fast subset.
        cedar.push_str("@id(\"tenant-wide\") forbid (principal in Portcullis::Tenant::\"acme\", action, resource == Portcullis::Tool::\"conn3/tool13\") when { context.cost_cents > 5000000 };\n");
    }
    PolicyDocument {
        cedar,
        settings: PolicySettings::default(),
    }
}

fn percentile(sorted: &[u128], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let profile = ToolProfile {
        cost_argument: Some("amount_cents".into()),
        tags: vec!["billing".into()],
        ..ToolProfile::default()
    };
    let arguments = serde_json::json!({"amount_cents": 2500, "to": "a@example.com", "note": "refund for order 1234"});
    let read_classes = vec!["customer".to_owned()];
    println!("| policies | layout | p50 µs | p99 µs | max µs | outcome |");
    println!("|---:|---|---:|---:|---:|---|");
    // `-- spread`, `-- cedar` or `-- one` runs one layout only, `-- 1000` one size (for
    // profiling).
    let only: Option<&str> = std::env::args()
        .skip(1)
        .find_map(|a| ["spread", "cedar", "one"].into_iter().find(|l| *l == a));
    let size: Option<usize> = std::env::args().skip(1).find_map(|a| a.parse().ok());
    for (n, layout) in [10, 100, 1000]
        .into_iter()
        .flat_map(|n| ["spread", "cedar", "one"].map(|layout| (n, layout)))
    {
        if only.is_some_and(|o| o != layout) || size.is_some_and(|s| s != n) {
            continue;
        }
        let spread = layout != "one";
        let engine = Engine::compile(&document(n, spread, layout == "cedar"))
            .expect("bench policies compile");
        let (connection, tool) = if spread {
            ("conn3", "tool13")
        } else {
            ("billing", "issue_refund")
        };
        let facts = CallFacts {
            tenant: "acme",
            agent: "agent-5",
            agent_owner: Some("alice"),
            connection,
            tool,
            effect: EffectClass::Spend,
            profile: &profile,
            arguments: &arguments,
            cost_cents: 2500,
            spent_today_cents: 10_000,
            agent_spent_today_cents: 2_500,
            session_read_classes: &read_classes,
            session_reads: 3,
            has_session: true,
            argument_classes: &[],
            guardrail: None,
            definition_changed: false,
            stated_reason: true,
            now: 1_790_000_000_000,
        };
        for _ in 0..2_000 {
            black_box(engine.evaluate(black_box(&facts)));
        }
        let mut samples = Vec::with_capacity(20_000);
        let mut outcome = None;
        for _ in 0..20_000 {
            let start = Instant::now();
            let evaluation = engine.evaluate(black_box(&facts));
            samples.push(start.elapsed().as_nanos());
            outcome = Some(evaluation.outcome());
        }
        samples.sort_unstable();
        println!(
            "| {n} | {} | {:.1} | {:.1} | {:.1} | {:?} |",
            match layout {
                "spread" => "spread",
                "cedar" => "spread, Cedar",
                _ => "one tool",
            },
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            *samples.last().unwrap() as f64 / 1000.0,
            outcome.unwrap()
        );
    }
}
