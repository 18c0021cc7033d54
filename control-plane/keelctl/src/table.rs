//! Tables as `kubectl get` prints them: upper-case headers, columns left-aligned and
//! separated by three spaces, the last column unpadded, no borders.

/// Spaces between two columns (kubectl's tabwriter padding).
const GAP: usize = 3;

/// A table being built: headers first, then rows of the same width.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// A cell as it may be shown on a terminal: what a server sent (member names, errors) could
/// hold escape sequences or line breaks that would forge or scramble the output, so control
/// characters are written as escapes (`\n`, `\u{1b}`).
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl Table {
    /// A table with these column names (shown upper-case).
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row. Missing cells are blank; cells beyond the headers are dropped, so a
    /// caller's mistake never shifts the columns of other rows.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut row: Vec<String> = cells
            .into_iter()
            .take(self.headers.len())
            .map(|c| printable(c.as_ref()))
            .collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table, one line per row after the header line, each ending in a newline.
    pub fn render(&self) -> String {
        let width = |cell: &String| cell.chars().count();
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|column| {
                std::iter::once(&self.headers)
                    .chain(&self.rows)
                    .map(|row| width(&row[column]))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if column + 1 < row.len() {
                    let pad = widths[column] - width(cell) + GAP;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            // A blank last cell would leave trailing spaces.
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Bytes as etcdctl shows a database size: `0 B`, `20 kB`, `1.5 MB` (SI units).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 || value >= 10.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell_plus_three() {
        let mut table = Table::new(&["name", "id", "healthy"]);
        table.row(["m0", "8e9e05c52164694d", "true"]);
        table.row(["member-long", "1", "false"]);
        assert_eq!(
            table.render(),
            "NAME          ID                 HEALTHY\n\
             m0            8e9e05c52164694d   true\n\
             member-long   1                  false\n"
        );
    }

    #[test]
    fn a_blank_last_cell_leaves_no_trailing_spaces() {
        let mut table = Table::new(&["a", "error"]);
        table.row(["x", ""]);
        table.row(["y", "refused"]);
        let text = table.render();
        assert!(text.lines().all(|l| l == l.trim_end()), "{text:?}");
        assert_eq!(text, "A   ERROR\nx\ny   refused\n");
    }

    #[test]
    fn short_and_long_rows_keep_the_columns() {
        let mut table = Table::new(&["a", "b"]);
        table.row(["1"]);
        table.row(["2", "3", "dropped"]);
        assert_eq!(table.render(), "A   B\n1\n2   3\n");
        assert!(!table.is_empty());
        assert!(Table::new(&["a"]).is_empty());
        assert_eq!(Table::new(&["only"]).render(), "ONLY\n");
    }

    #[test]
    fn control_characters_are_escaped_not_printed() {
        let mut table = Table::new(&["name"]);
        table.row(["evil\u{1b}[2J\nrow"]);
        let text = table.render();
        assert_eq!(text.lines().count(), 2, "{text:?}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains("evil\\u{1b}[2J\\nrow"), "{text:?}");
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let mut table = Table::new(&["n", "x"]);
        table.row(["é", "1"]);
        table.row(["ab", "2"]);
        assert_eq!(table.render(), "N    X\né    1\nab   2\n");
    }

    #[test]
    fn sizes_read_like_etcdctl() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(20_480), "20 kB");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(u64::MAX), "18447 PB");
    }
}
