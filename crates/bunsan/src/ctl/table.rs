//! Plain-text tables with aligned columns, for humans reading `bunsan ctl` output.

/// Renders `rows` under `header`, each column as wide as its widest cell.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = line(header.iter().map(|h| h.to_string()), &widths);
    for row in rows {
        out.push_str(&line(row.iter().cloned(), &widths));
    }
    out
}

fn line(cells: impl Iterator<Item = String>, widths: &[usize]) -> String {
    let padded: Vec<String> = cells.zip(widths).map(|(cell, &w)| format!("{cell:<w$}")).collect();
    let mut text = padded.join("  ").trim_end().to_owned();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns_columns() {
        let rows =
            vec![vec!["app".to_string(), "3".to_string()], vec!["a-long-pool".to_string(), "10".to_string()]];
        let text = super::render(&["POOL", "N"], &rows);
        assert_eq!(text, "POOL         N\napp          3\na-long-pool  10\n");
    }
}
