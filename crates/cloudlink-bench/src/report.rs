//! The report: figures per measurement, medians over runs, and the markdown
//! table with ours, Python and ours/Python side by side, followed by the
//! goals the figures are read against.
//!
//! Goals are reported, never asserted: the figures depend on the machine and
//! on what else it runs, so this program only measures and prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::stats::median;

/// Named figures of one measurement (medians once runs are merged).
pub type Figures = BTreeMap<&'static str, f64>;

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Our `cloudlink` binary.
    Ours,
    /// The Python CloudLink server from PyPI.
    Python,
}

impl Target {
    pub fn label(self) -> &'static str {
        match self {
            Target::Ours => "ours",
            Target::Python => "python",
        }
    }
}

/// Each figure's median over `runs` (a figure missing from some runs is the
/// median of the runs that have it).
pub fn merge_runs(runs: &[Figures]) -> Figures {
    let mut keys: Vec<&'static str> = runs.iter().flat_map(|r| r.keys().copied()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let values = runs.iter().filter_map(|r| r.get(key).copied()).collect();
            Some((key, median(values)?))
        })
        .collect()
}

/// The merged figures of one scenario, per server (`None` = not measured).
#[derive(Debug, Default, Clone)]
pub struct Pair {
    pub ours: Option<Figures>,
    pub python: Option<Figures>,
}

impl Pair {
    pub fn set(&mut self, target: Target, figures: Figures) {
        match target {
            Target::Ours => self.ours = Some(figures),
            Target::Python => self.python = Some(figures),
        }
    }

    fn get(&self, key: &str) -> (Option<f64>, Option<f64>) {
        let pick = |f: &Option<Figures>| f.as_ref().and_then(|f| f.get(key).copied());
        (pick(&self.ours), pick(&self.python))
    }
}

/// One line of the table.
struct Row {
    scenario: String,
    figure: String,
    ours: Option<f64>,
    python: Option<f64>,
}

/// A goal and whether the figures meet it.
struct Goal {
    text: String,
    outcome: String,
}

/// Everything printed at the end.
pub struct Report {
    rows: Vec<Row>,
    goals: Vec<Goal>,
    notes: Vec<String>,
    /// What the second column's server is called (`Python` unless another
    /// server is measured in its place).
    other: String,
}

impl Default for Report {
    fn default() -> Self {
        Self::comparing_with("Python")
    }
}

impl Report {
    /// An empty report whose second column is the server called `other`.
    pub fn comparing_with(other: &str) -> Self {
        Self {
            rows: Vec::new(),
            goals: Vec::new(),
            notes: Vec::new(),
            other: other.to_owned(),
        }
    }

    /// Adds the row `figure` of `scenario`, read from key `key` of both servers' figures.
    pub fn row(&mut self, scenario: &str, figure: &str, pair: &Pair, key: &str) {
        let (ours, python) = pair.get(key);
        if ours.is_none() && python.is_none() {
            return;
        }
        self.rows.push(Row {
            scenario: scenario.to_owned(),
            figure: figure.to_owned(),
            ours,
            python,
        });
    }

    /// Adds the goal "ours / Python ≥ `at_least`" for figure `key`.
    pub fn goal_ratio(&mut self, what: &str, pair: &Pair, key: &str, at_least: f64) {
        let (ours, python) = pair.get(key);
        let outcome = match (ours, python) {
            (Some(o), Some(p)) if p > 0.0 => {
                let r = o / p;
                format!(
                    "{} ({r:.1}×)",
                    if r >= at_least { "met" } else { "NOT met" }
                )
            }
            _ => "not measured (needs both servers)".to_owned(),
        };
        self.goals.push(Goal {
            text: format!("{what}: ours ≥ {at_least}× {}", self.other),
            outcome,
        });
    }

    /// Adds the goal "ours ≤ Python" for figure `key` (lower is better).
    pub fn goal_no_worse(&mut self, what: &str, pair: &Pair, key: &str) {
        let (ours, python) = pair.get(key);
        let outcome = match (ours, python) {
            (Some(o), Some(p)) => format!(
                "{} ({} vs {})",
                if o <= p { "met" } else { "NOT met" },
                number(o),
                number(p)
            ),
            _ => "not measured (needs both servers)".to_owned(),
        };
        self.goals.push(Goal {
            text: format!("{what}: ours no worse than {}", self.other),
            outcome,
        });
    }

    /// Adds the goal "ours ≤ `limit`" for figure `key`.
    pub fn goal_at_most(&mut self, what: &str, pair: &Pair, key: &str, limit: f64) {
        let outcome = match pair.get(key).0 {
            Some(o) => format!(
                "{} ({})",
                if o <= limit { "met" } else { "NOT met" },
                number(o)
            ),
            None => "not measured (ours was not run)".to_owned(),
        };
        self.goals.push(Goal {
            text: format!("{what}: ours ≤ {limit}"),
            outcome,
        });
    }

    /// Adds the goal "ours with a durable store ≥ `at_least` × ours in memory"
    /// for figure `key`.
    pub fn goal_durable(
        &mut self,
        durable: &Pair,
        in_memory: Option<&Figures>,
        key: &str,
        at_least: f64,
    ) {
        let outcome = match (durable.get(key).0, in_memory.and_then(|f| f.get(key))) {
            (Some(d), Some(&m)) if m > 0.0 => {
                let r = d / m;
                format!(
                    "{} ({r:.2}×)",
                    if r >= at_least { "met" } else { "NOT met" }
                )
            }
            _ => "not measured (needs the scratch and scratch-durable scenarios)".to_owned(),
        };
        self.goals.push(Goal {
            text: format!(
                "Scratch set delivered msgs/s, durable store ÷ --store memory ≥ {at_least}"
            ),
            outcome,
        });
    }

    /// Adds a line printed under the table.
    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// The whole report as markdown, starting with `title` and `conditions`.
    pub fn markdown(&self, title: &str, conditions: &[String]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## {title}\n");
        for line in conditions {
            let _ = writeln!(out, "{line}  ");
        }
        let _ = writeln!(out);
        let other = &self.other;
        let _ = writeln!(out, "| scenario | figure | ours | {other} | ours/{other} |");
        let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: |");
        for row in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                row.scenario,
                row.figure,
                cell(row.ours),
                cell(row.python),
                ratio(row.ours, row.python)
            );
        }
        if !self.goals.is_empty() {
            let _ = writeln!(out, "\nGoals (reported, not asserted):\n");
            for goal in &self.goals {
                let _ = writeln!(out, "- {}: {}", goal.text, goal.outcome);
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }
}

fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), number)
}

fn ratio(ours: Option<f64>, python: Option<f64>) -> String {
    match (ours, python) {
        (Some(o), Some(p)) if p != 0.0 => format!("{:.2}×", o / p),
        _ => "–".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(pairs: &[(&'static str, f64)]) -> Figures {
        pairs.iter().copied().collect()
    }

    #[test]
    fn medians_over_runs() {
        let runs = [
            figures(&[("a", 1.0), ("b", 9.0)]),
            figures(&[("a", 3.0)]),
            figures(&[("a", 2.0)]),
        ];
        let merged = merge_runs(&runs);
        assert_eq!(merged["a"], 2.0);
        assert_eq!(merged["b"], 9.0);
    }

    #[test]
    fn table_ratios_and_goals() {
        let pair = Pair {
            ours: Some(figures(&[("rate", 60_000.0), ("p99", 5.0), ("kb", 3.5)])),
            python: Some(figures(&[("rate", 1_000.0), ("p99", 4.0)])),
        };
        let mut report = Report::default();
        report.row("gmsg", "delivered msgs/s", &pair, "rate");
        report.row("gmsg", "absent", &pair, "nothing");
        report.row("idle", "KB", &pair, "kb");
        report.goal_ratio("gmsg rate", &pair, "rate", 50.0);
        report.goal_no_worse("gmsg p99", &pair, "p99");
        report.goal_at_most("idle KB", &pair, "kb", 4.0);
        let text = report.markdown("t", &["c".to_owned()]);
        assert!(text.contains("| gmsg | delivered msgs/s | 60000 | 1000 | 60.00× |"));
        assert!(text.contains("| idle | KB | 3.50 | – | – |"));
        assert!(!text.contains("absent"));
        assert!(text.contains("gmsg rate: ours ≥ 50× Python: met (60.0×)"));
        assert!(text.contains("gmsg p99: ours no worse than Python: NOT met (5.00 vs 4.00)"));
        assert!(text.contains("idle KB: ours ≤ 4: met (3.50)"));
    }
}
