//! The registry's refusals, with Confluent's error codes, and version selectors.

/// A refused request, with Confluent's error code and the HTTP status it goes with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RegistryError {
    /// The HTTP status.
    pub status: u16,
    /// Confluent's error code (40401, 409, 42201, …).
    pub code: u32,
    /// One line naming the problem.
    pub message: String,
}

impl RegistryError {
    pub(super) fn new(status: u16, code: u32, message: impl Into<String>) -> RegistryError {
        RegistryError {
            status,
            code,
            message: message.into(),
        }
    }
    pub(crate) fn subject_not_found(subject: &str) -> RegistryError {
        RegistryError::new(404, 40401, format!("Subject '{subject}' not found."))
    }
    pub(super) fn version_not_found(subject: &str, version: i32) -> RegistryError {
        RegistryError::new(
            404,
            40402,
            format!("Version {version} not found for subject '{subject}'."),
        )
    }
    pub(crate) fn schema_not_found(what: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(404, 40403, format!("Schema {what} not found"))
    }
    pub(super) fn invalid_schema(message: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(422, 42201, format!("Invalid schema: {message}"))
    }
    pub(crate) fn invalid_version(v: &str) -> RegistryError {
        RegistryError::new(
            422,
            42202,
            format!(
                "The specified version '{v}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
            ),
        )
    }
    pub(crate) fn invalid_level(level: &str) -> RegistryError {
        RegistryError::new(
            422,
            42203,
            format!(
                "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive (got '{level}')"
            ),
        )
    }
    pub(crate) fn unprocessable(message: impl Into<String>) -> RegistryError {
        RegistryError::new(422, 422, message)
    }
    pub(super) fn store(e: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(500, 50001, format!("Error in the backend data store: {e}"))
    }
}

/// A version selector: a number, or the latest live version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSel {
    /// `latest` (or -1).
    Latest,
    /// A version number.
    Number(i32),
}

impl VersionSel {
    /// Parses a path segment the way Confluent does.
    pub fn parse(s: &str) -> Result<VersionSel, RegistryError> {
        if s.eq_ignore_ascii_case("latest") || s == "-1" {
            return Ok(VersionSel::Latest);
        }
        match s.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(VersionSel::Number(n)),
            _ => Err(RegistryError::invalid_version(s)),
        }
    }
}
