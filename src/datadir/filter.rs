//! The replicate filter: which files of a data directory are cluster configuration.
//!
//! A file is replicated when it matches at least one include pattern and no exclude pattern.
//! Patterns are relative to data_dir and use a deliberately small glob language, implemented here
//! so its behaviour is pinned by our own tests rather than by a crate's edge cases:
//!
//! * `**` as a whole segment: any number of segments, including zero (`a/**` matches `a`, `a/b/c`);
//! * `*`: any run of characters within one segment; `?`: exactly one character;
//! * everything else is literal. `[…]`/`{…}` are refused so nobody relies on them silently.
//!
//! ## GeoServer's temporary files
//!
//! GeoServer never writes a catalog file in place. `FileSystemResourceStore.FileSystemResource.out()`
//! (geoserver/geoserver, `src/platform/.../platform/resource/FileSystemResourceStore.java`) writes
//! to `NAME.<random UUID>.tmp` in the *same directory* and, on close, renames it over `NAME` with
//! `Files.move` (a plain `File.renameTo` on POSIX). `GeoServerConfigPersister.persist` saves every
//! catalog object through `Resource.setContents`, i.e. through that path. The older helper
//! `Files.out(File)` in the same package uses `NAME.tmp` and the same rename. Both end in `.tmp`, so
//! `**/*.tmp` keeps half-written files out of a Delta; the rename then shows up as a new
//! inode/mtime on `NAME`, which the scan picks up. GeoServer's `FileLockProvider` keeps its
//! cluster locks as `filelocks/<sha1>.lock` under data_dir: excluded by `filelocks/**` and
//! `**/*.lock`.
//!
//! ## `gwc/geowebcache.xml` is in
//!
//! `gwc/` is GWC's home and, by default, its tile cache: everything two or more levels below it
//! (one folder per cached layer, the disk-quota database) is node-local and can be huge, so it is
//! excluded and the walk never enters it. But `gwc/geowebcache.xml` holds the gridsets and blob
//! stores defined in GeoServer's UI (the nhs-bi fixture defines a custom gridset there), and the
//! tile layers in `gwc-layers/` refer to gridsets by name: a slave without it would drop those tile
//! layers. So that one file is included. `geowebcache-diskquota.xml` and `metadata.properties`
//! describe this node's cache and stay out.
//!
//! `security/` is opt-in: it is in neither default list, so adding `security/**` to `include`
//! replicates it (the keystore and users must be shared on purpose, see geoserver-datadir.md).

/// The default include list: the catalog and the configuration GeoServer re-reads on reload.
pub fn default_include() -> Vec<String> {
    [
        "workspaces/**",
        "styles/**",
        "layergroups/**",
        "global.xml",
        "wms.xml",
        "wfs.xml",
        "wcs.xml",
        "wmts.xml",
        "wps.xml",
        "csw.xml",
        "gwc-gs.xml",
        "gwc-layers/**",
        "gwc/geowebcache.xml",
        "user_projections/**",
        "templates/**",
        "**/*.ftl",
    ]
    .map(String::from)
    .to_vec()
}

/// The default exclude list: node-local state, raw data, and files that are never finished
/// configuration (temporary, lock, backup and editor files).
pub fn default_exclude() -> Vec<String> {
    [
        "logging.xml",
        "logs/**",
        "temp/**",
        "tmp/**",
        "data/**",
        "coverages/**",
        "filelocks/**",
        "gwc/*/**/*",
        "**/*.tmp",
        "**/*.lock",
        "**/*.bak",
        "**/*~",
        "**/*.swp",
        "**/.*",
        "**/.*/**",
    ]
    .map(String::from)
    .to_vec()
}

/// One compiled pattern segment.
#[derive(Clone, Debug, PartialEq)]
enum Seg {
    /// `**`: zero or more whole segments.
    AnyDepth,
    /// A segment with `*`/`?` wildcards, stored as chars for simple backtracking.
    Chars(Vec<char>),
}

#[derive(Clone, Debug)]
struct Glob {
    segs: Vec<Seg>,
}

impl Glob {
    fn parse(pat: &str) -> Result<Glob, String> {
        let bad = |why: &str| Err(format!("replicate pattern {pat:?}: {why}"));
        if pat.is_empty() {
            return bad("empty pattern");
        }
        if pat.starts_with('/') {
            return bad("must be relative to data_dir (no leading `/`)");
        }
        if pat.contains('\\') {
            return bad("use `/` as the separator, not `\\`");
        }
        if pat.contains(['[', ']', '{', '}']) {
            return bad("`[…]` and `{…}` are not supported; write one pattern per alternative");
        }
        let mut segs: Vec<Seg> = Vec::new();
        for s in pat.split('/') {
            match s {
                "" => {
                    return bad("empty segment (`//` or trailing `/`); use `dir/**` for a folder")
                }
                "." | ".." => return bad("`.` and `..` segments are not allowed"),
                "**" => {
                    // `a/**/**/b` means the same as `a/**/b`; collapsing keeps matching linear.
                    if segs.last() != Some(&Seg::AnyDepth) {
                        segs.push(Seg::AnyDepth);
                    }
                }
                s if s.contains("**") => {
                    return bad("`**` must be a whole segment, as in `a/**/b`")
                }
                s => segs.push(Seg::Chars(s.chars().collect())),
            }
        }
        Ok(Glob { segs })
    }

    fn matches(&self, path: &[&str]) -> bool {
        match_segs(&self.segs, path)
    }

    /// Could this pattern match some path strictly below `dir`?
    fn may_match_below(&self, dir: &[&str]) -> bool {
        may_match_below(&self.segs, dir)
    }

    /// Does this pattern match *every* path strictly below `dir`? True for `P/**` and `P/**/*`
    /// when `P` matches `dir` or one of its ancestors; used to prune the walk.
    fn covers_dir(&self, dir: &[&str]) -> bool {
        let prefix = match self.segs.as_slice() {
            [p @ .., Seg::AnyDepth] => p,
            [p @ .., Seg::AnyDepth, Seg::Chars(last)] if last == &['*'] => p,
            _ => return false,
        };
        (1..=dir.len()).any(|k| match_segs(prefix, &dir[..k]))
    }
}

fn match_segs(pat: &[Seg], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        // `**/x`, x a last segment (`**/*.tmp`, most excludes): only the path's last segment
        // can be x, so there is no need to try every suffix.
        Some((Seg::AnyDepth, [Seg::Chars(c)])) => path.last().is_some_and(|l| match_seg(c, l)),
        Some((Seg::AnyDepth, rest)) => {
            match_segs(rest, path) || (!path.is_empty() && match_segs(pat, &path[1..]))
        }
        Some((Seg::Chars(c), rest)) => {
            !path.is_empty() && match_seg(c, path[0]) && match_segs(rest, &path[1..])
        }
    }
}

fn may_match_below(pat: &[Seg], dir: &[&str]) -> bool {
    match (pat.split_first(), dir.split_first()) {
        // Whatever pattern is left can match at least one more segment.
        (Some(_), None) => true,
        (None, _) => false,
        (Some((Seg::AnyDepth, rest)), Some((_, dir_rest))) => {
            may_match_below(rest, dir) || may_match_below(pat, dir_rest)
        }
        (Some((Seg::Chars(c), rest)), Some((d, dir_rest))) => {
            match_seg(c, d) && may_match_below(rest, dir_rest)
        }
    }
}

/// Wildcard match of one segment: `*` any run, `?` one char. Greedy with a single backtrack
/// point, linear in practice. Called for every pattern and path segment of every scanned file,
/// so it walks the name in place: no copy, no allocation.
fn match_seg(pat: &[char], name: &str) -> bool {
    // `n` is a byte offset into `name`, always on a char boundary.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(c) = name[n..].chars().next() {
        if p < pat.len() && (pat[p] == '?' || pat[p] == c) {
            p += 1;
            n += c.len_utf8();
        } else if p < pat.len() && pat[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            // Let the star take one more char (there is one: sn <= n < name.len()).
            let taken = name[sn..].chars().next().map_or(1, char::len_utf8);
            p = sp + 1;
            n = sn + taken;
            star = Some((sp, n));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == '*')
}

fn split(rel: &str) -> Vec<&str> {
    if rel.is_empty() {
        Vec::new()
    } else {
        rel.split('/').collect()
    }
}

/// A compiled replicate filter.
#[derive(Clone, Debug)]
pub struct Filter {
    include: Vec<Glob>,
    exclude: Vec<Glob>,
}

impl Filter {
    /// Compiles the patterns; the error names the first bad pattern and why it is bad.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Filter, String> {
        let compile = |v: &[String]| {
            v.iter()
                .map(|p| Glob::parse(p))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Filter {
            include: compile(include)?,
            exclude: compile(exclude)?,
        })
    }

    /// The filter with [`default_include`] and [`default_exclude`].
    pub fn defaults() -> Filter {
        Filter::new(&default_include(), &default_exclude()).expect("default patterns are valid")
    }

    /// Is the file at relative path `rel` replicated?
    pub fn matches(&self, rel: &str) -> bool {
        let p = split(rel);
        self.include.iter().any(|g| g.matches(&p)) && !self.exclude.iter().any(|g| g.matches(&p))
    }

    /// Can any file below directory `rel_dir` (`""` = data_dir itself) be replicated? False lets the
    /// walk skip whole trees such as `data/`, `logs/` and GWC's tile cache.
    pub fn may_contain(&self, rel_dir: &str) -> bool {
        let d = split(rel_dir);
        !self.exclude.iter().any(|g| g.covers_dir(&d))
            && self.include.iter().any(|g| g.may_match_below(&d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn f(inc: &[&str], exc: &[&str]) -> Filter {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Filter::new(&s(inc), &s(exc)).unwrap()
    }

    /// `?` is one character and `*` a run of characters, not of bytes: names in other
    /// scripts (a layer called `Straßen` or `道路`) match as they read.
    #[test]
    fn wildcards_count_characters_not_bytes() {
        assert!(f(&["styles/?.sld"], &[]).matches("styles/é.sld"));
        assert!(!f(&["styles/??.sld"], &[]).matches("styles/é.sld"));
        assert!(f(&["styles/*ßen.sld"], &[]).matches("styles/Straßen.sld"));
        assert!(f(&["styles/*路*.sld"], &[]).matches("styles/道路路網.sld"));
        assert!(!f(&["styles/*路?.sld"], &[]).matches("styles/道路.sld"));
        assert!(f(&["**/*é"], &[]).matches("a/ééé"));
    }

    #[test]
    fn double_star_matches_zero_or_more_segments() {
        let g = f(&["a/**/b.xml"], &[]);
        assert!(g.matches("a/b.xml"));
        assert!(g.matches("a/x/y/b.xml"));
        assert!(!g.matches("b.xml"));
        assert!(f(&["**/*.ftl"], &[]).matches("title.ftl"));
        assert!(f(&["**/*.ftl"], &[]).matches("workspaces/w/s/r/content.ftl"));
    }

    #[test]
    fn single_star_and_question_mark_stay_within_a_segment() {
        let g = f(&["styles/*.sld", "x?.xml"], &[]);
        assert!(g.matches("styles/roads.sld"));
        assert!(!g.matches("styles/images/roads.sld"));
        assert!(g.matches("x1.xml"));
        assert!(!g.matches("x12.xml"));
        assert!(!g.matches("x/.xml"));
    }

    #[test]
    fn exclude_wins_over_include() {
        let g = f(&["styles/**"], &["**/*.bak"]);
        assert!(g.matches("styles/a.sld"));
        assert!(!g.matches("styles/a.sld.bak"));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_pattern_named() {
        for p in [
            "", "/abs", "a//b", "a/", "../x", "a/**b", "a\\b", "[ab].xml",
        ] {
            let err = Filter::new(&[p.to_string()], &[]).unwrap_err();
            assert!(err.contains(&format!("{p:?}")), "{err}");
        }
    }

    #[test]
    fn walk_is_pruned_where_nothing_can_match() {
        let d = Filter::defaults();
        assert!(d.may_contain(""));
        assert!(d.may_contain("workspaces/ws/store"));
        assert!(d.may_contain("gwc"));
        for dir in [
            "data",
            "data/x",
            "logs",
            "gwc/citymap_layer",
            "gwc/a/b",
            ".git",
            "a/.svn",
        ] {
            assert!(!d.may_contain(dir), "{dir}");
        }
        let narrow = f(&["styles/**", "global.xml"], &[]);
        assert!(!narrow.may_contain("workspaces"));
        assert!(narrow.may_contain("styles/images"));
    }

    #[test]
    fn defaults_pick_configuration_and_leave_node_local_files() {
        let d = Filter::defaults();
        for yes in [
            "global.xml",
            "wms.xml",
            "gwc-gs.xml",
            "gwc/geowebcache.xml",
            "gwc-layers/LayerInfoImpl-1.xml",
            "styles/roads.sld",
            "styles/images/icon.svg",
            "workspaces/ws/st/res/layer.xml",
            "workspaces/ws/st/res/content.ftl",
            "templates/header.ftl",
            "user_projections/epsg.properties",
        ] {
            assert!(d.matches(yes), "{yes}");
        }
        for no in [
            "logging.xml",
            "logs/geoserver.log",
            "security/usergroup/default/users.xml",
            "gwc/geowebcache-diskquota.xml",
            "gwc/layer_x/EPSG_4326_03/0_0/00_00.png",
            "data/roads.shp",
            "styles/a.sld.bak",
            "styles/a.xml.3f2b6a0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b.tmp",
            "workspaces/ws/.featuretype.xml.swp",
            "workspaces/ws/layer.xml~",
            "filelocks/abc.lock",
            "controlflow.properties",
        ] {
            assert!(!d.matches(no), "{no}");
        }
        let with_security = {
            let mut inc = default_include();
            inc.push("security/**".into());
            Filter::new(&inc, &default_exclude()).unwrap()
        };
        assert!(with_security.matches("security/usergroup/default/users.xml"));
    }

    proptest! {
        #[test]
        fn trailing_double_star_matches_the_dir_and_everything_below(
            dir in prop::collection::vec("[a-z]{1,3}", 1..4),
            tail in prop::collection::vec("[a-z]{1,3}", 0..4),
        ) {
            let pat = format!("{}/**", dir.join("/"));
            let g = f(&[&pat], &[]);
            let mut path = dir.clone();
            path.extend(tail);
            prop_assert!(g.matches(&path.join("/")));
        }

        #[test]
        fn star_matches_any_single_segment_name(name in "[a-zA-Z0-9 ._-]{1,12}") {
            prop_assert!(match_seg(&['*'], &name));
            let pat: Vec<char> = name.chars().collect();
            prop_assert!(match_seg(&pat, &name));
        }

        /// The `**/x` shortcut decides as trying every suffix does.
        #[test]
        fn the_last_segment_shortcut_agrees_with_trying_every_suffix(
            pat in "(\\*\\*/)?(([ab]|\\*|\\?)/)?(\\*\\*/)?(a|b\\*|\\*a|\\?)",
            path in prop::collection::vec("[ab]{1,3}", 0..5),
        ) {
            fn every_suffix(pat: &[Seg], path: &[&str]) -> bool {
                match pat.split_first() {
                    None => path.is_empty(),
                    Some((Seg::AnyDepth, rest)) => {
                        every_suffix(rest, path) || (!path.is_empty() && every_suffix(pat, &path[1..]))
                    }
                    Some((Seg::Chars(c), rest)) => {
                        !path.is_empty() && match_seg(c, path[0]) && every_suffix(rest, &path[1..])
                    }
                }
            }
            let g = Glob::parse(&pat).unwrap();
            let p: Vec<&str> = path.iter().map(String::as_str).collect();
            prop_assert_eq!(g.matches(&p), every_suffix(&g.segs, &p), "{} {:?}", pat, path);
        }

        #[test]
        fn may_contain_is_consistent_with_matches(
            pat in "(\\*\\*|[ab]|\\*)(/(\\*\\*|[ab]|\\*)){0,3}",
            path in prop::collection::vec("[ab]", 1..5),
        ) {
            // If some file matches, every ancestor directory must be reported as may_contain.
            let g = f(&[&pat], &[]);
            if g.matches(&path.join("/")) {
                for k in 0..path.len() {
                    prop_assert!(g.may_contain(&path[..k].join("/")), "{} {:?}", pat, &path[..k]);
                }
            }
        }
    }
}
