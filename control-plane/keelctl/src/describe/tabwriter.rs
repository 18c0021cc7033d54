//! Go's `text/tabwriter` as kubectl's describers set it up (minimum width 0, padding 2,
//! padded with spaces): lines hold tab-terminated cells, and each column is as wide as its
//! widest cell plus two, counted over a *block*, the consecutive lines that have a cell in
//! that column. A line without a tab ends every block, which is why describe output aligns
//! section by section rather than all at once.

/// Spaces after the widest cell of a column block.
const PADDING: usize = 2;

/// Lines waiting to be aligned, and what was aligned already.
#[derive(Debug, Default)]
pub(super) struct TabWriter {
    pending: Vec<String>,
    out: String,
}

impl TabWriter {
    /// A line, indented two spaces per level (kubectl's `PrefixWriter`). Its text must hold
    /// no newline, and tabs only where cells end: whatever came from the server must have
    /// gone through `printable` first.
    pub(super) fn line(&mut self, level: usize, text: &str) {
        self.pending.push("  ".repeat(level) + text);
    }

    /// Aligns the pending lines on their own: later lines start new blocks.
    pub(super) fn flush(&mut self) {
        self.out.push_str(&align(&self.pending));
        self.pending.clear();
    }

    pub(super) fn finish(mut self) -> String {
        self.flush();
        self.out
    }
}

fn width(cell: &str) -> usize {
    cell.chars().count()
}

fn align(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    // A row's cells are all its parts but the last, which is not aligned.
    let cells = |row: &Vec<&str>| row.len().saturating_sub(1);
    let mut widths: Vec<Vec<usize>> = rows.iter().map(|row| vec![0; cells(row)]).collect();
    let columns = rows.iter().map(cells).max().unwrap_or(0);
    for column in 0..columns {
        let mut start = 0;
        while start < rows.len() {
            if cells(&rows[start]) <= column {
                start += 1;
                continue;
            }
            let mut end = start;
            let mut block_width = 0;
            while end < rows.len() && cells(&rows[end]) > column {
                block_width = block_width.max(width(rows[end][column]) + PADDING);
                end += 1;
            }
            for row in &mut widths[start..end] {
                row[column] = block_width;
            }
            start = end;
        }
    }
    let mut out = String::new();
    for (row, widths) in rows.iter().zip(&widths) {
        // Padding after the last non-empty part would only be trailing spaces.
        let last = row.iter().rposition(|part| !part.is_empty()).unwrap_or(0);
        for (index, part) in row.iter().enumerate().take(last + 1) {
            out.push_str(part);
            if index < last {
                let pad = widths.get(index).copied().unwrap_or(0);
                out.extend(std::iter::repeat_n(' ', pad.saturating_sub(width(part))));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(lines: &[(usize, &str)]) -> String {
        let mut w = TabWriter::default();
        for (level, text) in lines {
            w.line(*level, text);
        }
        w.finish()
    }

    #[test]
    fn columns_align_per_block_of_consecutive_lines() {
        // `Kind:` shares the block of the lines above it, as in kubectl's output.
        let text = written(&[
            (0, "Name:\tweb"),
            (0, "Annotations:\t<none>"),
            (0, "Spec:"),
            (1, "Replicas:\t3"),
            (1, "Paused:\tfalse"),
            (0, "Kind:\tDeployment"),
        ]);
        assert_eq!(
            text,
            "Name:         web\n\
             Annotations:  <none>\n\
             Spec:\n  \
             Replicas:  3\n  \
             Paused:    false\n\
             Kind:        Deployment\n"
        );
    }

    #[test]
    fn empty_cells_are_padded_and_trailing_ones_are_not() {
        let text = written(&[(0, "Labels:\ta=1"), (0, "\tb=2"), (0, "Empty:\t")]);
        assert_eq!(text, "Labels:  a=1\n         b=2\nEmpty:\n");
    }

    #[test]
    fn several_columns_and_flushes() {
        let mut w = TabWriter::default();
        w.line(0, "Status:\tlong value here");
        w.flush();
        w.line(0, "Events:");
        w.line(1, "Type\tReason\tAge\tMessage");
        w.line(1, "Normal\tScaled\t10s\tdone");
        let text = w.finish();
        assert_eq!(
            text,
            "Status:  long value here\n\
             Events:\n  \
             Type    Reason  Age  Message\n  \
             Normal  Scaled  10s  done\n"
        );
        // Widths count characters, not bytes.
        assert_eq!(written(&[(0, "é:\t1"), (0, "ab:\t2")]), "é:   1\nab:  2\n");
    }
}
