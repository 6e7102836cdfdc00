//! Tenant-tunable settings of the built-in policies: the money caps, which approval points
//! are on, who may approve at each point and how many must, and flow-aware escalation.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The five approval points (plus the general rule that every effect needs a person, and the
/// hold on changed tool definitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Point {
    /// Any world-changing call not covered by a guardrail.
    Effect,
    /// Money over the tenant's cap, per action or per day.
    Money,
    /// Public claims under the company's name.
    Publish,
    /// Customer data leaving the boundary.
    Export,
    /// Production-touching changes.
    Production,
    /// External sends after the session read private or untrusted data.
    Flow,
    /// The upstream changed a tool's definition since it was accepted.
    DefinitionChanged,
}

impl Point {
    pub const ALL: [Point; 7] = [
        Self::Effect,
        Self::Money,
        Self::Publish,
        Self::Export,
        Self::Production,
        Self::Flow,
        Self::DefinitionChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Effect => "effect",
            Self::Money => "money",
            Self::Publish => "publish",
            Self::Export => "export",
            Self::Production => "production",
            Self::Flow => "flow",
            Self::DefinitionChanged => "definition_changed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == value)
    }

    /// Whether a tenant may switch this point off. The general effect hold and the hold on
    /// changed definitions are the gateway's own promise and stay on.
    pub fn can_disable(self) -> bool {
        !matches!(self, Self::Effect | Self::DefinitionChanged)
    }
}

/// Who may approve at one approval point, and how many must.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproverRule {
    /// Distinct approvers needed (1–10).
    #[serde(default = "one")]
    pub required: u32,
    /// Named approvers allowed to vote here; empty means any approver of the tenant.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// The agent's owner may not approve its own agent's action.
    #[serde(default = "yes")]
    pub no_self_approval: bool,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

impl Default for ApproverRule {
    fn default() -> Self {
        Self {
            required: 1,
            approvers: Vec::new(),
            no_self_approval: true,
        }
    }
}

/// Why `voter` may not vote on a request held under these rules, or `None` when they may: a
/// voter must be named by at least one rule (or a rule names nobody), and is refused outright
/// when a rule forbids self-approval and they own the requesting agent.
pub fn refuse_voter(
    rules: &[(Point, ApproverRule)],
    voter: &str,
    agent_owner: Option<&str>,
) -> Option<String> {
    if agent_owner == Some(voter) && rules.iter().any(|(_, r)| r.no_self_approval) {
        return Some(format!(
            "`{voter}` owns the requesting agent and may not approve its actions"
        ));
    }
    let named = rules
        .iter()
        .any(|(_, r)| r.approvers.is_empty() || r.approvers.iter().any(|a| a == voter));
    if named {
        None
    } else {
        Some(format!(
            "`{voter}` is not an approver for {}",
            rules
                .iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// A human about to approve, as far as sock-puppet checks need: who they are, which other
/// identities control or controlled their credential (whoever created them and whoever last
/// replaced their token, each with those identities' own creators — nearest first,
/// transitively), and since when the credential has been in its present hands (its creation,
/// or its last replacement by someone else).
#[derive(Debug, Clone, Copy)]
pub struct VoterIdentity<'a> {
    pub name: &'a str,
    pub creators: &'a [String],
    pub created_at: crate::UnixMillis,
}

/// Why this identity may not approve a request held at `held_at`, or `None`.
///
/// INVARIANT: sock puppets cannot vote. A credential created (or handed over by another
/// identity replacing its token) after the request was held may not approve it — nobody can
/// mint a fresh approver for a request already waiting — and an identity created or
/// re-keyed — directly or through others — by the agent's owner counts as the owner wherever
/// a rule forbids self-approval. `also_excluded` (a revert's proposer) may not approve
/// either.
pub fn refuse_identity(
    rules: &[(Point, ApproverRule)],
    voter: &VoterIdentity<'_>,
    agent_owner: Option<&str>,
    also_excluded: Option<&str>,
    held_at: crate::UnixMillis,
) -> Option<String> {
    if voter.created_at > held_at {
        return Some(format!(
            "`{}` was created (or its credential handed over) after this request was held; such an identity may not approve it",
            voter.name
        ));
    }
    if let Some(owner) = agent_owner
        && rules.iter().any(|(_, r)| r.no_self_approval)
        && voter.creators.iter().any(|c| c == owner)
    {
        return Some(format!(
            "`{}` was created or re-keyed by `{owner}`, who owns the requesting agent; identities an owner created or re-keyed count as the owner and may not approve",
            voter.name
        ));
    }
    if also_excluded == Some(voter.name) {
        return Some(format!(
            "`{}` proposed this request and may not approve it",
            voter.name
        ));
    }
    refuse_voter(rules, voter.name, agent_owner)
}

/// Whether these distinct approvers satisfy every rule: each rule counts only the approvers
/// it admits.
pub fn satisfied(rules: &[(Point, ApproverRule)], approvers: &[String]) -> bool {
    rules.iter().all(|(_, rule)| {
        let admitted = approvers
            .iter()
            .filter(|a| rule.approvers.is_empty() || rule.approvers.contains(a))
            .count();
        admitted >= rule.required as usize
    })
}

/// One approval point's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointSettings {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub approvers: ApproverRule,
}

impl Default for PointSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            approvers: ApproverRule::default(),
        }
    }
}

/// The money caps, in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoneyLimits {
    pub per_action_cents: i64,
    /// The whole tenant, per UTC day.
    pub per_day_cents: i64,
    /// Each agent, per UTC day; `None`: the tenant's daily cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_agent_day_cents: Option<i64>,
}

impl MoneyLimits {
    pub fn per_agent_day(&self) -> i64 {
        self.per_agent_day_cents.unwrap_or(self.per_day_cents)
    }
}

impl Default for MoneyLimits {
    fn default() -> Self {
        Self {
            per_action_cents: 10_000,
            per_day_cents: 100_000,
            per_agent_day_cents: None,
        }
    }
}

/// Flow-aware escalation: which data classes, once read in a session, make external sends
/// and exports hold even under a guardrail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    #[serde(default = "default_classes")]
    pub classes: Vec<String>,
}

fn default_classes() -> Vec<String> {
    vec!["private".into(), "untrusted".into()]
}

impl Default for Escalation {
    fn default() -> Self {
        Self {
            classes: default_classes(),
        }
    }
}

/// Everything a tenant tunes about the built-in policies. Missing fields take the defaults,
/// which are the safe ones: every point on, production needs two approvers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    #[serde(default)]
    pub money: MoneyLimits,
    #[serde(default)]
    pub escalation: Escalation,
    /// Per point; a point not listed takes [`PolicySettings::point`]'s default.
    #[serde(default)]
    pub points: BTreeMap<Point, PointSettings>,
}

impl PolicySettings {
    /// The settings of one point, with defaults filled in.
    pub fn point(&self, point: Point) -> PointSettings {
        self.points
            .get(&point)
            .cloned()
            .unwrap_or_else(|| PointSettings {
                enabled: true,
                approvers: ApproverRule {
                    required: if point == Point::Production { 2 } else { 1 },
                    ..ApproverRule::default()
                },
            })
    }

    /// Refuse settings that cannot be honoured.
    pub fn validate(&self) -> Result<(), String> {
        if self.money.per_action_cents < 0
            || self.money.per_day_cents < 0
            || self.money.per_agent_day() < 0
        {
            return Err("money caps must not be negative".into());
        }
        for class in &self.escalation.classes {
            if class.is_empty() || class.len() > 64 || class.chars().any(char::is_control) {
                return Err(format!(
                    "escalation class {class:?} must be 1–64 characters without control characters"
                ));
            }
        }
        for (point, settings) in &self.points {
            if !settings.enabled && !point.can_disable() {
                return Err(format!(
                    "the `{}` point cannot be switched off",
                    point.as_str()
                ));
            }
            let rule = &settings.approvers;
            if !(1..=10).contains(&rule.required) {
                return Err(format!(
                    "`{}`: required approvers must be between 1 and 10",
                    point.as_str()
                ));
            }
            if !rule.approvers.is_empty() && (rule.approvers.len() as u32) < rule.required {
                return Err(format!(
                    "`{}`: {} approvals required but only {} approvers named",
                    point.as_str(),
                    rule.required,
                    rule.approvers.len()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_safe_ones() {
        let s: PolicySettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s.point(Point::Production).approvers.required, 2);
        assert_eq!(s.point(Point::Money).approvers.required, 1);
        assert!(Point::ALL.iter().all(|p| s.point(*p).enabled));
        assert!(s.point(Point::Export).approvers.no_self_approval);
        s.validate().unwrap();
    }

    #[test]
    fn approver_rules_count_admitted_distinct_voters() {
        let any2 = ApproverRule {
            required: 2,
            ..ApproverRule::default()
        };
        let named = ApproverRule {
            required: 1,
            approvers: vec!["sec".into()],
            no_self_approval: true,
        };
        let rules = vec![(Point::Production, any2), (Point::Export, named)];
        let v = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert!(!satisfied(&rules, &v(&["alice"])));
        assert!(
            !satisfied(&rules, &v(&["alice", "bob"])),
            "export needs sec"
        );
        assert!(satisfied(&rules, &v(&["alice", "sec"])));
        assert!(
            refuse_voter(&rules, "alice", Some("alice")).is_some(),
            "self"
        );
        assert!(refuse_voter(&rules, "alice", Some("bob")).is_none());
        let only_named = vec![(Point::Export, rules[1].1.clone())];
        assert!(refuse_voter(&only_named, "alice", None).is_some());
        assert!(refuse_voter(&only_named, "sec", None).is_none());
    }

    #[test]
    fn bad_settings_are_refused() {
        for bad in [
            r#"{"points":{"effect":{"enabled":false}}}"#,
            r#"{"points":{"money":{"approvers":{"required":0}}}}"#,
            r#"{"points":{"deploy":{}}}"#,
            r#"{"points":{"production":{"approvers":{"required":2,"approvers":["alice"]}}}}"#,
            r#"{"money":{"per_action_cents":-1,"per_day_cents":5}}"#,
            r#"{"surprise":1}"#,
            r#"{"escalation":{"classes":[""]}}"#,
            r#"{"escalation":{"classes":["a\nb"]}}"#,
        ] {
            let parsed: Result<PolicySettings, _> = serde_json::from_str(bad);
            assert!(
                parsed.is_err() || parsed.unwrap().validate().is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn sock_puppets_cannot_vote() {
        let rules = vec![(Point::Effect, ApproverRule::default())];
        let creators = ["olivia".to_owned(), "admin".to_owned()];
        let puppet = VoterIdentity {
            name: "pat",
            creators: &creators,
            created_at: 10,
        };
        // Created by the owner (directly or through others): counts as the owner.
        assert!(refuse_identity(&rules, &puppet, Some("olivia"), None, 20).is_some());
        assert!(refuse_identity(&rules, &puppet, Some("admin"), None, 20).is_some());
        // Created after the request was held.
        let late = VoterIdentity {
            name: "lee",
            creators: &[],
            created_at: 21,
        };
        assert!(refuse_identity(&rules, &late, None, None, 20).is_some());
        // The proposer of a revert.
        assert!(refuse_identity(&rules, &puppet, None, Some("pat"), 20).is_some());
        assert_eq!(
            refuse_identity(&rules, &puppet, None, Some("olivia"), 20),
            None
        );
        // Otherwise the usual rules apply.
        assert_eq!(
            refuse_identity(&rules, &puppet, Some("zoe"), None, 20),
            None
        );
        let no_self = vec![(
            Point::Effect,
            ApproverRule {
                no_self_approval: false,
                ..Default::default()
            },
        )];
        assert_eq!(
            refuse_identity(&no_self, &puppet, Some("olivia"), None, 20),
            None
        );
    }
}
