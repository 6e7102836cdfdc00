//! The built-in policies: the general effect hold and the five approval points, written in
//! Cedar and generated from the tenant's [`PolicySettings`] (a switched-off point is left
//! out). Their ids start with `builtin.`, a prefix tenant policies may not use.
//!
//! The tenant's caps and escalating data classes are written into the text as literals, so a
//! reviewer reads the numbers in force and a call does not carry them in its context.

use super::settings::{Point, PolicySettings};
use std::fmt::Write as _;

/// Bumped whenever the text below changes meaning, so the policy-set hash changes with it.
pub const BUILTIN_VERSION: u32 = 5;

/// Reserved id prefix of built-in policies.
pub const PREFIX: &str = "builtin.";

/// The built-in policies for these settings, as Cedar text.
pub fn policies(settings: &PolicySettings) -> String {
    let mut out = String::from(
        r#"@id("builtin.reads")
@reason("reads and drafts stay inside the boundary")
permit (principal, action in [Portcullis::Action::"read", Portcullis::Action::"draft"], resource);

@id("builtin.effects")
@reason("world-changing calls are considered (and held below) rather than refused")
permit (principal, action in Portcullis::Action::"effect", resource);

@id("builtin.effect")
@hold
@point("effect")
@reason("this call changes the world and no guardrail covers it")
forbid (principal, action in Portcullis::Action::"effect", resource)
unless { context.guardrail.covered };

@id("builtin.definition_changed")
@hold
@point("definition_changed")
@reason("the upstream changed this tool's definition since it was accepted")
forbid (principal, action, resource)
when { context.definition_changed };
"#,
    );
    let money = &settings.money;
    // The day clauses hold only calls that cost something: once the day's spend is over the
    // cap, a $0 call adds nothing to it and is left to the other points and guardrails.
    let money_body = format!(
        r#"forbid (principal, action in Portcullis::Action::"effect", resource)
when {{ context.cost_cents > {} ||
       (context.cost_cents > 0 &&
        (context.spent_today_cents + context.cost_cents > {} ||
         context.agent_spent_today_cents + context.cost_cents > {})) }};"#,
        money.per_action_cents,
        money.per_day_cents,
        money.per_agent_day()
    );
    // `{:?}` writes a Rust string literal, whose escapes Cedar's string literals share.
    let classes: Vec<String> = settings
        .escalation
        .classes
        .iter()
        .map(|c| format!("{c:?}"))
        .collect();
    let flow_body = format!(
        r#"forbid (principal, action in [Portcullis::Action::"send", Portcullis::Action::"publish", Portcullis::Action::"export"], resource)
when {{ context.session.read_classes.containsAny([{}]) }};"#,
        classes.join(", ")
    );
    let points: [(Point, &str, &str); 5] = [
        (
            Point::Money,
            "money over the tenant's cap (per action or per day)",
            &money_body,
        ),
        (
            Point::Publish,
            "a public claim under the company's name",
            r#"forbid (principal, action == Portcullis::Action::"publish", resource);"#,
        ),
        (
            Point::Export,
            "customer data leaving the boundary",
            r#"forbid (principal, action in Portcullis::Action::"effect", resource)
when { action == Portcullis::Action::"export" ||
       resource.tags.containsAny(["share", "integration"]) ||
       resource.data_classes.contains("customer") ||
       context.argument_classes.contains("customer") };"#,
        ),
        (
            Point::Production,
            "a production-touching change",
            r#"forbid (principal, action in Portcullis::Action::"effect", resource)
when { action == Portcullis::Action::"deploy" ||
       resource.tags.containsAny(["production", "deploy", "infrastructure", "billing", "security"]) };"#,
        ),
        (
            Point::Flow,
            "an external send after the session read private or untrusted data",
            &flow_body,
        ),
    ];
    for (point, reason, body) in points {
        if !settings.point(point).enabled {
            continue;
        }
        let _ = write!(
            out,
            "\n@id(\"builtin.{name}\")\n@hold\n@point(\"{name}\")\n@reason(\"{reason}\")\n{body}\n",
            name = point.as_str()
        );
    }
    out
}
