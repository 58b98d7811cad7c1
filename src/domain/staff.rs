//! The host's staff member behind a star-menu action, as the audit trail and the status texts name
//! them.

/// Longest host user id kept.
const MAX_ID: usize = 64;
/// Longest display name kept.
const MAX_NAME: usize = 200;

/// A staff member: the host's user id and display name, clamped and without control characters
/// (they are shown to other staff and printed as JSON lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffMember {
    pub id: String,
    pub name: String,
}

impl StaffMember {
    /// From what the host sent. Never fails: an action is not refused for an odd name.
    pub fn from_host(id: &str, name: &str) -> Self {
        Self { id: clean(id, MAX_ID), name: clean(name, MAX_NAME) }
    }
}

fn clean(value: &str, max: usize) -> String {
    value.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_clamped_and_control_characters_blanked() {
        let staff = StaffMember::from_host(&"u".repeat(100), "Sam\n(front desk)\u{1b}[31m");
        assert_eq!(staff.id.len(), MAX_ID);
        assert_eq!(staff.name, "Sam (front desk) [31m");
        assert_eq!(StaffMember::from_host("u", &"é".repeat(300)).name.chars().count(), MAX_NAME);
    }
}
