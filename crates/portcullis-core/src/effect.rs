//! Effect classes: what a tool call does to the world, as the gateway (not the upstream) sees it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The effect class of a tool. `Read` and `Draft` stay inside the boundary; every other class
/// changes the world and is held for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EffectClass {
    Read,
    Draft,
    Write,
    Send,
    Publish,
    Spend,
    Delete,
    Deploy,
    Export,
}

impl EffectClass {
    pub const ALL: [EffectClass; 9] = [
        Self::Read,
        Self::Draft,
        Self::Write,
        Self::Send,
        Self::Publish,
        Self::Spend,
        Self::Delete,
        Self::Deploy,
        Self::Export,
    ];

    /// True for every class that changes something outside the boundary.
    pub fn is_effect(self) -> bool {
        !matches!(self, Self::Read | Self::Draft)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Draft => "draft",
            Self::Write => "write",
            Self::Send => "send",
            Self::Publish => "publish",
            Self::Spend => "spend",
            Self::Delete => "delete",
            Self::Deploy => "deploy",
            Self::Export => "export",
        }
    }

    /// Parse a class name as written in configuration or on the command line.
    pub fn parse(value: &str) -> Result<Self, UnknownEffectClass> {
        Self::ALL
            .into_iter()
            .find(|class| class.as_str() == value)
            .ok_or_else(|| UnknownEffectClass(value.chars().take(64).collect()))
    }

    /// The seed class for a tool the operator has not classified, from its MCP annotations.
    ///
    /// Annotations come from the upstream and are only hints: a `readOnlyHint` seeds `read`,
    /// a `destructiveHint` seeds `delete`, anything else (including no annotations) seeds
    /// `write`, so an unknown tool is always treated as an effect.
    pub fn seed_from_annotations(
        read_only_hint: Option<bool>,
        destructive_hint: Option<bool>,
    ) -> Self {
        match (read_only_hint, destructive_hint) {
            (Some(true), _) => Self::Read,
            (_, Some(true)) => Self::Delete,
            _ => Self::Write,
        }
    }
}

impl fmt::Display for EffectClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a tool's current definition is the one an operator accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefinitionStatus {
    /// The pinned hash matches what the upstream serves now.
    Accepted,
    /// The upstream changed the definition since it was classified; treat as an unknown effect.
    Changed,
}

/// How the gateway classifies one tool as it stands: the class an operator set (or the
/// annotations seeded) and whether the definition served now is the pinned one. Decisions
/// take the class from here, never from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    class: EffectClass,
    definition: DefinitionStatus,
}

impl Classification {
    /// A tool classified `class` whose pinned definition hash is `pinned` and whose served
    /// one is `current`.
    pub fn of(class: EffectClass, pinned: &str, current: &str) -> Self {
        Self {
            class,
            definition: if pinned == current {
                DefinitionStatus::Accepted
            } else {
                DefinitionStatus::Changed
            },
        }
    }

    /// The class a call is decided as. INVARIANT: a changed definition is an unknown tool, and
    /// an unknown tool is an effect.
    pub fn effective(self) -> EffectClass {
        match self.definition {
            DefinitionStatus::Changed if !self.class.is_effect() => EffectClass::Write,
            _ => self.class,
        }
    }

    /// The class as classified, before a changed definition is taken into account.
    pub fn classified(self) -> EffectClass {
        self.class
    }

    pub fn definition(self) -> DefinitionStatus {
        self.definition
    }

    pub fn definition_changed(self) -> bool {
        self.definition == DefinitionStatus::Changed
    }
}

/// A class name that is not one of the nine effect classes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an effect class (read, draft, write, send, publish, spend, delete, deploy, export)"
)]
pub struct UnknownEffectClass(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_trip_and_unknowns_are_effects() {
        for class in EffectClass::ALL {
            assert_eq!(EffectClass::parse(class.as_str()).unwrap(), class);
        }
        assert!(EffectClass::parse("reed").is_err());
        assert_eq!(
            EffectClass::seed_from_annotations(None, None),
            EffectClass::Write
        );
        assert_eq!(
            EffectClass::seed_from_annotations(Some(false), None),
            EffectClass::Write
        );
        assert_eq!(
            EffectClass::seed_from_annotations(Some(true), None),
            EffectClass::Read
        );
        assert_eq!(
            EffectClass::seed_from_annotations(None, Some(true)),
            EffectClass::Delete
        );
        assert!(EffectClass::seed_from_annotations(None, None).is_effect());
    }

    #[test]
    fn a_changed_definition_is_decided_as_an_effect() {
        use EffectClass::*;
        assert_eq!(Classification::of(Read, "a", "b").effective(), Write);
        assert_eq!(Classification::of(Draft, "a", "b").effective(), Write);
        assert_eq!(Classification::of(Send, "a", "b").effective(), Send);
        assert_eq!(Classification::of(Read, "a", "a").effective(), Read);
        assert!(Classification::of(Read, "a", "b").definition_changed());
        assert!(!Classification::of(Send, "a", "a").definition_changed());
    }
}
