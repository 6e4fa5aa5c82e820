//! The host's own rules for Scratch clients, read from files the host edits:
//! a username filter, project allow and block lists, and whether a client
//! must say who it is (a `User-Agent`).
//!
//! The files are read at start and again on SIGHUP ([`HostRules::load`]);
//! a file that does not read or parse keeps the rules in force and says why,
//! so a typo never opens or closes a server by accident. After a reload the
//! server closes the clients the new rules refuse (see
//! `CloudLink::apply_host_rules`) and nobody else.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use regex::{Regex, RegexBuilder};

/// Where the rules come from; each file is optional.
#[derive(Debug, Clone, Default)]
pub struct HostRuleFiles {
    /// One case-insensitive regular expression a line; a username whose
    /// letters and digits (everything else removed) match one is refused.
    pub username_filter: Option<PathBuf>,
    /// One project id a line; when given, only these projects may be joined.
    pub project_allow: Option<PathBuf>,
    /// One project id a line; these projects may not be joined.
    pub project_block: Option<PathBuf>,
    /// Refuse clients that send no `User-Agent` header.
    pub require_user_agent: bool,
}

/// Rules in force; see the module doc.
#[derive(Debug, Default)]
pub struct HostRules {
    username_filters: Vec<Regex>,
    project_allow: Option<HashSet<String>>,
    project_block: HashSet<String>,
    require_user_agent: bool,
}

/// Why a client is refused, with the close code TurboWarp's server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 4002: the username matches the filter.
    Username,
    /// 4004: the project is not allowed, or blocked.
    Project,
    /// 4006: no `User-Agent`.
    Anonymous,
}

impl HostRules {
    /// Reads every file named in `files`; the error names the file and the
    /// line that is wrong.
    pub fn load(files: &HostRuleFiles) -> Result<Self, String> {
        let username_filters = match &files.username_filter {
            None => Vec::new(),
            Some(path) => lines(path)?
                .into_iter()
                .map(|(number, pattern)| {
                    RegexBuilder::new(&pattern)
                        .case_insensitive(true)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| {
                            format!("{}:{number}: not a regular expression: {e}", path.display())
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let ids = |path: &Option<PathBuf>| -> Result<Option<HashSet<String>>, String> {
            path.as_deref()
                .map(|path| Ok(lines(path)?.into_iter().map(|(_, id)| id).collect()))
                .transpose()
        };
        Ok(Self {
            username_filters,
            project_allow: ids(&files.project_allow)?,
            project_block: ids(&files.project_block)?.unwrap_or_default(),
            require_user_agent: files.require_user_agent,
        })
    }

    /// Whether a client with this username, project and `User-Agent` may be
    /// in the project.
    pub(crate) fn check(
        &self,
        username: &str,
        project: &str,
        has_user_agent: bool,
    ) -> Result<(), Refusal> {
        if self.require_user_agent && !has_user_agent {
            return Err(Refusal::Anonymous);
        }
        if !self.project_allowed(project) {
            return Err(Refusal::Project);
        }
        if self.username_filtered(username) {
            return Err(Refusal::Username);
        }
        Ok(())
    }

    fn project_allowed(&self, project: &str) -> bool {
        self.project_allow
            .as_ref()
            .is_none_or(|allowed| allowed.contains(project))
            && !self.project_block.contains(project)
    }

    fn username_filtered(&self, username: &str) -> bool {
        if self.username_filters.is_empty() {
            return false;
        }
        let letters: String = username.chars().filter(|c| c.is_alphanumeric()).collect();
        self.username_filters.iter().any(|r| r.is_match(&letters))
    }
}

/// The non-blank lines of a file that are not `#` comments, trimmed, with
/// their line numbers.
fn lines(path: &Path) -> Result<Vec<(usize, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(number, line)| (number, line.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> Option<PathBuf> {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        Some(path)
    }

    #[test]
    fn names_are_matched_without_their_punctuation_and_case() {
        let dir = tempfile::tempdir().unwrap();
        let rules = HostRules::load(&HostRuleFiles {
            username_filter: file(&dir, "names", "# rude words\n\nbadword\n^admin$\n"),
            ..HostRuleFiles::default()
        })
        .unwrap();
        assert_eq!(
            rules.check("B-a_D.word99", "1", true),
            Err(Refusal::Username)
        );
        assert_eq!(rules.check("ADMIN", "1", true), Err(Refusal::Username));
        assert_eq!(rules.check("admin2", "1", true), Ok(()));
    }

    #[test]
    fn allow_and_block_lists_and_the_user_agent() {
        let dir = tempfile::tempdir().unwrap();
        let rules = HostRules::load(&HostRuleFiles {
            project_allow: file(&dir, "allow", "1\n2\n"),
            project_block: file(&dir, "block", "2\n"),
            require_user_agent: true,
            ..HostRuleFiles::default()
        })
        .unwrap();
        assert_eq!(rules.check("a", "1", true), Ok(()));
        assert_eq!(rules.check("a", "2", true), Err(Refusal::Project));
        assert_eq!(rules.check("a", "3", true), Err(Refusal::Project));
        assert_eq!(rules.check("a", "1", false), Err(Refusal::Anonymous));
    }

    #[test]
    fn a_bad_file_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let error = HostRules::load(&HostRuleFiles {
            username_filter: file(&dir, "names", "fine\n(unclosed\n"),
            ..HostRuleFiles::default()
        })
        .unwrap_err();
        assert!(
            error.contains("names:2: not a regular expression"),
            "{error}"
        );
        let error = HostRules::load(&HostRuleFiles {
            project_block: Some(dir.path().join("missing")),
            ..HostRuleFiles::default()
        })
        .unwrap_err();
        assert!(error.contains("cannot read"), "{error}");
    }
}
