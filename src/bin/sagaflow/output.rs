//! What the command line prints: aligned tables, colour on a terminal only, and
//! the formats of times and durations.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use unicode_width::UnicodeWidthStr;

/// Whether to colour what is printed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Style {
    color: bool,
}

/// How a cell is painted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Paint {
    Plain,
    Bold,
    /// By the status the text names.
    Status,
    Red,
}

impl Style {
    /// `always`, `never`, or `auto`: on a terminal, unless `NO_COLOR` is set to
    /// something (<https://no-color.org>).
    pub(crate) fn new(choice: super::ColorChoice) -> Style {
        let color = match choice {
            super::ColorChoice::Always => true,
            super::ColorChoice::Never => false,
            super::ColorChoice::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        };
        Style { color }
    }

    pub(crate) fn paint(&self, text: &str, paint: Paint) -> String {
        if !self.color || text.is_empty() {
            return text.to_owned();
        }
        let code = match paint {
            Paint::Plain => return text.to_owned(),
            Paint::Bold => "1",
            Paint::Red => "31",
            Paint::Status => status_colour(text),
        };
        if code.is_empty() { text.to_owned() } else { format!("\x1b[{code}m{text}\x1b[0m") }
    }
}

fn status_colour(status: &str) -> &'static str {
    match status.split(' ').next().unwrap_or_default() {
        "completed" | "compensated" => "32",
        "failed" | "rolled_back" | "rollback_failed" | "failing" | "compensation_failed" => "31",
        "running" | "retrying" | "rolling_back" | "cancelling" | "snoozed" => "33",
        "awaiting" | "paused" | "pending" => "34",
        "cancelled" | "skipped" => "2",
        _ => "",
    }
}

/// An aligned table: a header line and rows, columns as wide as their widest cell.
#[derive(Debug)]
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<(String, Paint)>>,
}

impl Table {
    pub(crate) fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    pub(crate) fn row(&mut self, cells: Vec<(String, Paint)>) {
        self.rows.push(cells);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(crate) fn print(&self, style: &Style, out: &mut impl Write) -> std::io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.width()).collect();
        for row in &self.rows {
            for (i, (text, _)) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(text.width());
                }
            }
        }
        let last = self.headers.len().saturating_sub(1);
        let line = |cells: Vec<(String, Paint)>| -> String {
            let mut s = String::new();
            for (i, (text, paint)) in cells.into_iter().enumerate() {
                let pad = if i == last { 0 } else { widths[i].saturating_sub(text.width()) + 2 };
                s.push_str(&style.paint(&text, paint));
                s.push_str(&" ".repeat(pad));
            }
            s.trim_end().to_owned()
        };
        writeln!(out, "{}", line(self.headers.iter().map(|h| (h.to_string(), Paint::Bold)).collect()))?;
        for row in &self.rows {
            writeln!(out, "{}", line(row.clone()))?;
        }
        Ok(())
    }
}

pub(crate) fn plain(text: impl Into<String>) -> (String, Paint) {
    (text.into(), Paint::Plain)
}

pub(crate) fn painted(text: impl Into<String>, paint: Paint) -> (String, Paint) {
    (text.into(), paint)
}

/// `2025-06-04 12:00:00` (UTC).
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub(crate) fn time_opt(t: Option<DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_else(|| "–".into())
}

/// `850 ms`, `3.2 s`, `4m 05s`, `2h 10m`, `3d 4h`.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1000 {
        format!("{ms} ms")
    } else if s < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d {}h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// `a` shortened to `n` characters with an ellipsis.
pub(crate) fn clip(a: &str, n: usize) -> String {
    let one_line = a.replace('\n', " ");
    if one_line.chars().count() <= n {
        return one_line;
    }
    let mut s: String = one_line.chars().take(n.saturating_sub(1)).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_by_display_width() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec![plain("überprüfen"), plain("x")]);
        t.row(vec![plain("日本"), plain("y")]);
        let mut out = Vec::new();
        t.print(&Style { color: false }, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "A           B");
        assert_eq!(lines[1], "überprüfen  x");
        assert_eq!(lines[2], "日本        y", "wide characters count twice");
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(3_240)), "3.2 s");
        assert_eq!(duration(Duration::from_secs(245)), "4m 05s");
        assert_eq!(duration(Duration::from_secs(7_800)), "2h 10m");
        assert_eq!(duration(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d 4h");
        assert_eq!(clip("abcdef", 4), "abc…");
    }

    #[test]
    fn colour_only_when_asked() {
        let on = Style { color: true };
        assert_eq!(on.paint("failed", Paint::Status), "\x1b[31mfailed\x1b[0m");
        assert_eq!(Style { color: false }.paint("failed", Paint::Status), "failed");
    }
}
