//! Plain-text tables shared by `plugins list`, `report` and the patch
//! summary: the layout lives here so none of them depends on `cli`.

use std::fmt::Write as _;
use std::io::Write;

/// Left-aligned columns separated by two spaces; the last column unpadded.
pub fn write<R: AsRef<[String]>>(out: &mut impl Write, rows: &[R]) -> std::io::Result<()> {
    let columns = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let row = row.as_ref();
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_pad_to_the_widest_cell_and_the_last_is_unpadded() {
        let rows = [
            vec!["NAME".to_owned(), "VERSION".to_owned(), "NOTE".to_owned()],
            vec!["libssl3".to_owned(), "3.0.11".to_owned(), String::new()],
        ];
        let mut out = Vec::new();
        super::write(&mut out, &rows).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "NAME     VERSION  NOTE\nlibssl3  3.0.11\n");
    }
}
