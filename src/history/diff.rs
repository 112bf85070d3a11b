//! A unified diff of two versions of a file (`gscluster show --diff`): lines, three of context,
//! hunks as `diff -u` prints them.

/// Beyond this many cells (lines of one side × lines of the other, once the common start and
/// end are set aside) the middle is shown as removed then added, not matched line by line.
const MAX_CELLS: usize = 4_000_000;
const CONTEXT: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    Same(usize, usize),
    Removed(usize),
    Added(usize),
}

/// The diff of `old` to `new` under the names `a` and `b`; empty when they are equal. Content
/// that is not UTF-8 is compared by bytes and said to differ.
pub fn unified(a: &str, b: &str, old: &[u8], new: &[u8]) -> String {
    if old == new {
        return String::new();
    }
    let (Ok(old), Ok(new)) = (std::str::from_utf8(old), std::str::from_utf8(new)) else {
        return format!("Binary files {a} and {b} differ\n");
    };
    let x: Vec<&str> = old.split_inclusive('\n').collect();
    let y: Vec<&str> = new.split_inclusive('\n').collect();
    let script = edit_script(&x, &y);
    let mut out = format!("--- {a}\n+++ {b}\n");
    let changed: Vec<usize> = (0..script.len())
        .filter(|&i| !matches!(script[i], Line::Same(..)))
        .collect();
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(CONTEXT);
        let mut end = changed[i];
        while i < changed.len() && changed[i] <= end + 2 * CONTEXT + 1 {
            end = changed[i];
            i += 1;
        }
        let end = (end + CONTEXT + 1).min(script.len());
        hunk(&mut out, &script[start..end], &x, &y);
    }
    out
}

fn hunk(out: &mut String, lines: &[Line], x: &[&str], y: &[&str]) {
    let first_old = lines.iter().find_map(|l| match *l {
        Line::Same(i, _) | Line::Removed(i) => Some(i),
        Line::Added(_) => None,
    });
    let first_new = lines.iter().find_map(|l| match *l {
        Line::Same(_, j) | Line::Added(j) => Some(j),
        Line::Removed(_) => None,
    });
    let n_old = (lines.iter())
        .filter(|l| !matches!(l, Line::Added(_)))
        .count();
    let n_new = (lines.iter())
        .filter(|l| !matches!(l, Line::Removed(_)))
        .count();
    // As `diff -u`: a side with no line names the line before the hunk.
    let at = |first: Option<usize>, n: usize, other: Option<usize>| match first {
        Some(f) => (f + 1, n),
        None => (other.unwrap_or(0), 0),
    };
    let (o, no) = at(first_old, n_old, first_new);
    let (p, np) = at(first_new, n_new, first_old);
    out.push_str(&format!("@@ -{o},{no} +{p},{np} @@\n"));
    for l in lines {
        let (mark, text) = match *l {
            Line::Same(i, _) => (' ', x[i]),
            Line::Removed(i) => ('-', x[i]),
            Line::Added(j) => ('+', y[j]),
        };
        out.push(mark);
        out.push_str(text);
        if !text.ends_with('\n') {
            out.push_str("\n\\ No newline at end of file\n");
        }
    }
}

/// The lines of both sides in order, matched by a longest common subsequence.
fn edit_script(x: &[&str], y: &[&str]) -> Vec<Line> {
    let pre = x.iter().zip(y).take_while(|(a, b)| a == b).count();
    let suf = (x[pre..].iter().rev())
        .zip(y[pre..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (xm, ym) = (&x[pre..x.len() - suf], &y[pre..y.len() - suf]);
    let mut out: Vec<Line> = (0..pre).map(|i| Line::Same(i, i)).collect();
    if xm.len().saturating_mul(ym.len()) > MAX_CELLS {
        out.extend((0..xm.len()).map(|i| Line::Removed(pre + i)));
        out.extend((0..ym.len()).map(|j| Line::Added(pre + j)));
    } else {
        // lcs[i][j]: the common subsequence of xm[i..] and ym[j..].
        let w = ym.len() + 1;
        let mut lcs = vec![0u32; (xm.len() + 1) * w];
        for i in (0..xm.len()).rev() {
            for j in (0..ym.len()).rev() {
                lcs[i * w + j] = if xm[i] == ym[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < xm.len() || j < ym.len() {
            if i < xm.len() && j < ym.len() && xm[i] == ym[j] {
                out.push(Line::Same(pre + i, pre + j));
                (i, j) = (i + 1, j + 1);
            } else if i < xm.len() && (j == ym.len() || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])
            {
                out.push(Line::Removed(pre + i));
                i += 1;
            } else {
                out.push(Line::Added(pre + j));
                j += 1;
            }
        }
    }
    let (xs, ys) = (x.len() - suf, y.len() - suf);
    out.extend((0..suf).map(|k| Line::Same(xs + k, ys + k)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_changed_line_in_the_middle_is_one_hunk_with_context() {
        let old = "1\n2\n3\n4\n<title>Roads</title>\n6\n7\n8\n9\n";
        let new = "1\n2\n3\n4\n<title>Main roads</title>\n6\n7\n8\n9\n";
        assert_eq!(
            unified("a/x", "b/x", old.as_bytes(), new.as_bytes()),
            "--- a/x\n+++ b/x\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-<title>Roads</title>\n+<title>Main roads</title>\n 6\n 7\n 8\n"
        );
    }

    #[test]
    fn far_apart_changes_are_two_hunks_and_equal_content_no_diff() {
        let old: String = (1..=30).map(|i| format!("{i}\n")).collect();
        let new: String = (1..=30)
            .filter(|&i| i != 28)
            .map(|i| {
                if i == 2 {
                    "two\n".into()
                } else {
                    format!("{i}\n")
                }
            })
            .collect();
        let d = unified("a", "b", old.as_bytes(), new.as_bytes());
        assert_eq!(d.matches("@@ ").count(), 2, "{d}");
        assert!(d.contains("-2\n+two\n") && d.contains("-28\n"), "{d}");
        assert_eq!(unified("a", "b", b"same", b"same"), "");
    }

    #[test]
    fn creation_deletion_and_binary_content() {
        let d = unified("/dev/null", "b/x", b"", b"<a/>\n");
        assert_eq!(d, "--- /dev/null\n+++ b/x\n@@ -0,0 +1,1 @@\n+<a/>\n");
        let d = unified("a/x", "/dev/null", b"<a/>", b"");
        assert!(d.ends_with("-<a/>\n\\ No newline at end of file\n"), "{d}");
        assert_eq!(
            unified("a", "b", &[0xff, 0], b"x"),
            "Binary files a and b differ\n"
        );
    }
}
