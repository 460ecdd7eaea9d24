//! The harness's own tests: the trace parser, the image builder and the timeline on synthetic
//! traces, the oracle on models and on files it must reject, and the recorder against the
//! parser on a short real run. None of them depends on the engine being power-cut safe, so
//! they always run.

use crate::common::{k, Rng};
use crate::pc::image::{self, build, Built, Chooser, FailedSync, Fate, KeepAll, LoseAll};
use crate::pc::oracle;
use crate::pc::trace::{self, encode, parse, Rec, FAULT_SYNC, FAULT_WRITE};
use crate::pc::workload::{self, call_mark, Call, End, Models, Plan, Session, ACK_LIMIT, END};
use crate::pc::{self, Profile, RandomChooser, Scratch, Timeline};

/// Asserts two byte strings are equal, naming the first difference (not printing them).
#[track_caller]
fn same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} bytes against {} wanted; first difference at {at:?}: {:?} against {:?}",
            got.len(),
            want.len(),
            at.map(|i| got[i]),
            at.map(|i| want[i])
        );
    }
}

fn w(off: u64, byte: u8, len: usize) -> Rec {
    Rec::Write {
        off,
        data: vec![byte; len],
    }
}

/// Decides from a script, and logs what it was asked.
struct Scripted {
    pieces: Vec<Fate>,
    metas: Vec<bool>,
    asked: Vec<(usize, u64, u64, u32)>,
}

impl Scripted {
    fn new(pieces: &[Fate], metas: &[bool]) -> Scripted {
        Scripted {
            pieces: pieces.to_vec(),
            metas: metas.to_vec(),
            asked: Vec::new(),
        }
    }
}

impl Chooser for Scripted {
    fn piece(&mut self, rec: usize, off: u64, len: u64, sectors: u32) -> Fate {
        self.asked.push((rec, off, len, sectors));
        assert!(
            !self.pieces.is_empty(),
            "asked about more pieces than scripted"
        );
        self.pieces.remove(0)
    }
    fn meta(&mut self, _: usize) -> bool {
        self.metas.remove(0)
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

#[test]
fn parser_reads_back_every_kind_of_record() {
    let recs = vec![
        w(4096, 0xab, 100),
        Rec::Write {
            off: 7,
            data: vec![],
        },
        Rec::Punch {
            off: 8192,
            len: 4096,
        },
        Rec::SetLen { len: 1 << 20 },
        Rec::Sync,
        Rec::Mark(42),
        Rec::Mark(END),
        Rec::Fault {
            op: FAULT_SYNC,
            errno: 5,
        },
    ];
    let bytes = encode(&recs);
    assert_eq!(&bytes[..8], b"HDTRACE2");
    // The file's binding (an empty path) and 8 records, of 21 header bytes, and 100 payload
    // bytes.
    assert_eq!(bytes.len(), 8 + 9 * 21 + 100);
    assert_eq!(parse(&bytes).unwrap(), recs);
    assert_eq!(parse(b"HDTRACE2").unwrap(), Vec::<Rec>::new());
}

#[test]
fn parser_rejects_damaged_and_truncated_traces() {
    let recs = vec![w(0, 1, 10), Rec::Sync, w(4096, 2, 300)];
    let bytes = encode(&recs);
    // Every cut inside a record is an error naming that record; a cut between records is a
    // shorter trace (the END marker check catches those).
    // Record 0 binds the file.
    let boundaries = [
        8,
        8 + 21,
        8 + 21 + 21 + 10,
        8 + 21 + 21 + 10 + 21,
        bytes.len(),
    ];
    for cut in 0..bytes.len() {
        let r = parse(&bytes[..cut]);
        if cut < 8 {
            assert!(r.unwrap_err().what.contains("HDTRACE2"), "cut {cut}");
        } else if boundaries.contains(&cut) {
            let n = boundaries.iter().position(|b| *b == cut).unwrap();
            assert_eq!(r.unwrap().len(), n.saturating_sub(1), "cut {cut}");
        } else {
            let e = r.unwrap_err();
            assert!(e.what.starts_with("truncated"), "cut {cut}: {e}");
            let n = boundaries.iter().filter(|b| **b <= cut).count() - 1;
            assert_eq!(e.record, n, "cut {cut}: {e}");
            assert_eq!(e.at, boundaries[n], "cut {cut}: {e}");
        }
    }
    let mut bad = bytes.clone();
    bad[8 + 21 + 21 + 10] = b'X';
    let e = parse(&bad).unwrap_err();
    assert_eq!((e.record, e.at), (2, 8 + 21 + 21 + 10));
    assert!(e.what.contains("unknown record kind 0x58"), "{e}");
    let mut bad = bytes;
    bad[0] = b'h';
    assert!(parse(&bad).is_err());
    let overflow = encode(&[Rec::Punch {
        off: u64::MAX,
        len: 2,
    }]);
    assert!(parse(&overflow).unwrap_err().what.contains("overflows"));
}

/// A trace of several files: `recs` as `(file, record)`.
fn files_trace(paths: &[&str], recs: &[(u32, Rec)]) -> trace::Trace {
    trace::Trace {
        paths: paths.iter().map(|p| p.to_string()).collect(),
        recs: recs.iter().map(|(_, r)| r.clone()).collect(),
        file: recs.iter().map(|(f, _)| *f).collect(),
    }
}

#[test]
fn parser_reads_back_traces_of_several_files() {
    let t = files_trace(
        &["", "a", ".a.tmp"],
        &[
            (1, w(0, 1, 10)),
            (2, Rec::Create),
            (2, w(0, 2, 5)),
            (2, Rec::Sync),
            (2, Rec::Rename { to: 1 }),
            (0, Rec::SyncDir),
            (trace::NO_FILE, Rec::Mark(7)),
            (1, Rec::SetLen { len: 3 }),
        ],
    );
    let bytes = trace::encode_files(&t);
    assert_eq!(trace::parse_files(&bytes).unwrap(), t);
    // A one-file parse refuses it: a second file.
    let e = parse(&bytes).unwrap_err();
    assert!(e.what.contains("second file"), "{e}");
    // ... and a creation, rename or directory sync even on one file.
    for r in [Rec::Create, Rec::Rename { to: 0 }, Rec::SyncDir] {
        let one = trace::encode_files(&files_trace(&["x"], &[(0, r.clone())]));
        let e = parse(&one).unwrap_err();
        assert!(e.what.contains("one-file trace"), "{r:?}: {e}");
        assert!(trace::parse_files(&one).is_ok(), "{r:?}");
    }
    // Unbound files, renames to unbound files, bindings out of order, markers on a file.
    let bad = [
        files_trace(&["a"], &[(1, Rec::Sync)]),
        files_trace(&["a"], &[(0, Rec::Rename { to: 1 })]),
        files_trace(&["a"], &[(0, Rec::Mark(1))]),
    ];
    for t in &bad {
        assert!(
            trace::parse_files(&trace::encode_files(t)).is_err(),
            "{t:?}"
        );
    }
    let mut swapped = trace::encode_files(&files_trace(&["a"], &[]));
    swapped[9] = 1; // binds index 1 first
    let e = trace::parse_files(&swapped).unwrap_err();
    assert!(e.what.contains("not the next one"), "{e}");
}

/// The directory built by `Dir` from `base` and `t` at `crash`, keeping the first `keep`
/// unsynced entries.
fn dir_image(
    base: &[(&str, &[u8])],
    t: &trace::Trace,
    crash: usize,
    choose: &mut dyn Chooser,
    keep: u32,
) -> pc::files::Files {
    let base = base
        .iter()
        .map(|(n, b)| (n.to_string(), b.to_vec()))
        .collect();
    let d = pc::files::Dir::of(&base, t).unwrap();
    d.build(crash, choose, &mut |n| keep.min(n)).0
}

#[test]
fn a_sync_makes_only_its_own_file_durable() {
    let t = files_trace(
        &["a", "b"],
        &[
            (0, w(0, 1, 100)),
            (1, w(0, 2, 100)),
            (0, Rec::Sync),
            (1, w(100, 3, 10)),
        ],
    );
    let base: &[(&str, &[u8])] = &[("a", b""), ("b", b"")];
    for crash in 3..=4 {
        let f = dir_image(base, &t, crash, &mut LoseAll, 0);
        assert_eq!(f["a"], vec![1; 100], "crash {crash}");
        assert!(f["b"].is_empty(), "crash {crash}: b was never synced");
        let f = dir_image(base, &t, crash, &mut KeepAll, 0);
        assert_eq!(f["b"].len(), if crash == 4 { 110 } else { 100 });
    }
    // A sync of b makes b's writes durable, not a's later ones.
    let mut t2 = t.clone();
    t2.recs.extend([w(200, 4, 10), Rec::Sync]);
    t2.file.extend([0, 1]);
    let f = dir_image(base, &t2, 6, &mut LoseAll, 0);
    assert_eq!(f["a"], vec![1; 100]);
    assert_eq!(f["b"].len(), 110);
}

#[test]
fn an_atomic_replace_shows_the_old_file_or_the_new_until_the_directory_sync() {
    // The set log's rewrite: create the temporary file, write, fsync, rename, fsync the
    // directory; then an append to the new file.
    let t = files_trace(
        &[".log.tmp", "log", ""],
        &[
            (0, Rec::Create),
            (0, w(0, 9, 30)),
            (0, Rec::Sync),
            (0, Rec::Rename { to: 1 }),
            (2, Rec::SyncDir),
            (1, w(30, 8, 10)),
        ],
    );
    let base: &[(&str, &[u8])] = &[("log", &[7; 50])];
    let names = |f: &pc::files::Files| f.keys().cloned().collect::<Vec<_>>();
    // Before the rename: the old log, whatever survived of the entries.
    for keep in 0..=1 {
        let f = dir_image(base, &t, 3, &mut KeepAll, keep);
        assert_eq!(f["log"], vec![7; 50]);
    }
    // After the rename, before the directory sync: the old log, or the new one (synced, so
    // whole even when every unsynced write is lost).
    let f = dir_image(base, &t, 4, &mut LoseAll, 0);
    assert_eq!(names(&f), ["log"]);
    assert_eq!(f["log"], vec![7; 50]);
    let f = dir_image(base, &t, 4, &mut LoseAll, 1);
    assert_eq!(names(&f), [".log.tmp", "log"]);
    assert_eq!((&f["log"], &f[".log.tmp"]), (&vec![7; 50], &vec![9; 30]));
    let f = dir_image(base, &t, 4, &mut LoseAll, 2);
    assert_eq!(names(&f), ["log"]);
    assert_eq!(f["log"], vec![9; 30]);
    // After the directory sync: the new log, and the append to it as its own sync says.
    for keep in 0..=2 {
        let f = dir_image(base, &t, 5, &mut LoseAll, keep);
        assert_eq!(f["log"], vec![9; 30]);
        let f = dir_image(base, &t, 6, &mut LoseAll, keep);
        assert_eq!(f["log"], vec![9; 30]);
        let f = dir_image(base, &t, 6, &mut KeepAll, keep);
        let mut want = vec![9; 30];
        want.extend([8; 10]);
        assert_eq!(f["log"], want);
    }
}

#[test]
fn creating_a_file_that_exists_cuts_it() {
    let t = files_trace(&["a"], &[(0, Rec::Create), (0, Rec::Sync)]);
    let base: &[(&str, &[u8])] = &[("a", b"xyz")];
    assert_eq!(dir_image(base, &t, 1, &mut LoseAll, 0)["a"], b"xyz");
    assert!(dir_image(base, &t, 1, &mut KeepAll, 0)["a"].is_empty());
    assert!(dir_image(base, &t, 2, &mut LoseAll, 0)["a"].is_empty());
    // An operation on a file that does not exist is a harness error.
    let t = files_trace(&["b"], &[(0, w(0, 1, 1))]);
    assert!(pc::files::Dir::of(&Default::default(), &t).is_err());
}

// ---------------------------------------------------------------------------------------------
// Image builder

/// A base of 3 blocks: block i filled with 0xa0 + i.
fn base() -> Vec<u8> {
    (0..3 * 4096).map(|i| 0xa0 + (i / 4096) as u8).collect()
}

#[test]
fn a_crash_right_after_a_sync_gives_exactly_the_synced_file() {
    let recs = vec![
        w(100, 1, 5000),
        Rec::Punch {
            off: 8192,
            len: 4096,
        },
        Rec::Mark(1),
        w(12288, 2, 10), // past the end: extends
        Rec::SetLen { len: 20000 },
        Rec::Sync,
        w(0, 3, 4096),
        Rec::Sync,
        w(0, 9, 4096),
    ];
    let mut want = base();
    want[100..5100].fill(1);
    want[8192..12288].fill(0);
    want.resize(12298, 0);
    want[12288..12298].fill(2);
    want.resize(20000, 0);
    let mut after_second = want.clone();
    after_second[..4096].fill(3);
    for (crash, want) in [(6, &want), (8, &after_second)] {
        let mut rng = Rng(7);
        let choosers: Vec<Box<dyn Chooser>> = vec![
            Box::new(KeepAll),
            Box::new(LoseAll),
            Box::new(Scripted::new(&[], &[])),
        ];
        for mut c in choosers {
            let (img, built) = build(&base(), &recs, crash, FailedSync::KeepsDirty, &mut *c);
            same(&img, want, &format!("crash point {crash}"));
            assert_eq!(built.last_sync, Some(crash - 1));
            assert_eq!(
                built,
                Built {
                    last_sync: Some(crash - 1),
                    ..Built::default()
                }
            );
        }
        // Random choices have nothing to decide either.
        let (img, _) = build(
            &base(),
            &recs,
            crash,
            FailedSync::KeepsDirty,
            &mut RandomChooser {
                rng: &mut rng,
                profile: Profile::Random {
                    keep: 0.3,
                    torn: 0.3,
                },
            },
        );
        same(&img, want, "random choices");
    }
    // Before any record: the base itself.
    same(
        &build(&base(), &recs, 0, FailedSync::KeepsDirty, &mut KeepAll).0,
        &base(),
        "crash point 0",
    );
}

#[test]
fn a_lost_write_leaves_the_old_bytes_and_a_kept_one_the_new() {
    let recs = vec![w(0, 1, 10), Rec::Sync, w(1000, 7, 6000)];
    let mut synced = base();
    synced[..10].fill(1);
    let (lost, b) = build(&base(), &recs, 3, FailedSync::KeepsDirty, &mut LoseAll);
    same(&lost, &synced, "lost");
    assert_eq!((b.unsynced, b.kept, b.lost, b.torn), (1, 0, 2, 0));
    let (kept, b) = build(&base(), &recs, 3, FailedSync::KeepsDirty, &mut KeepAll);
    let mut want = synced.clone();
    want[1000..7000].fill(7);
    same(&kept, &want, "kept");
    assert_eq!((b.kept, b.lost, b.torn), (2, 0, 0));
    assert!(b.nothing_lost());
    // One piece of two: [1000, 4096) lost, [4096, 7000) kept.
    let mut c = Scripted::new(&[Fate::Lost, Fate::Kept], &[]);
    let (half, _) = build(&base(), &recs, 3, FailedSync::KeepsDirty, &mut c);
    let mut want = synced;
    want[4096..7000].fill(7);
    same(&half, &want, "half");
    assert_eq!(c.asked, vec![(2, 1000, 3096, 7), (2, 4096, 2904, 6)]);
}

#[test]
fn writes_are_cut_at_4k_file_boundaries_and_torn_at_sectors() {
    // An unaligned write over three blocks: pieces [4000, 4096), [4096, 8192), [8192, 9000).
    let recs = vec![Rec::Write {
        off: 4000,
        data: (0..5000u32).map(|i| (i % 251) as u8).collect(),
    }];
    let new = |at: usize| ((at - 4000) % 251) as u8;
    // The middle piece keeps sectors 0 and 2 (bits 0b101); the others are lost.
    let mut c = Scripted::new(&[Fate::Lost, Fate::Torn(0b101), Fate::Lost], &[]);
    let (img, b) = build(&base(), &recs, 1, FailedSync::KeepsDirty, &mut c);
    assert_eq!(
        c.asked,
        vec![(0, 4000, 96, 1), (0, 4096, 4096, 8), (0, 8192, 808, 2)]
    );
    assert_eq!((b.kept, b.lost, b.torn), (0, 2, 1));
    assert_eq!(img.len(), base().len());
    for (at, byte) in img.iter().enumerate() {
        let kept = (4096..4608).contains(&at) || (5120..5632).contains(&at);
        let want = if kept { new(at) } else { base()[at] };
        assert_eq!(*byte, want, "byte {at}");
    }
    // The torn piece mixes sectors: some new, some old, inside one block.
    assert_ne!(img[4096..4608], base()[4096..4608]);
    same(&img[4608..5120], &base()[4608..5120], "sector 1");
    // A torn first piece that starts inside a sector keeps only its own bytes of it.
    let mut c = Scripted::new(&[Fate::Kept, Fate::Lost, Fate::Torn(0b10)], &[]);
    let (img, _) = build(&base(), &recs, 1, FailedSync::KeepsDirty, &mut c);
    assert_eq!(img[3999], base()[3999]);
    assert_eq!(img[4000], new(4000));
    same(&img[4096..8192], &base()[4096..8192], "lost middle piece");
    same(
        &img[8192..8704],
        &base()[8192..8704],
        "lost sector of the last piece",
    );
    assert_eq!(img[8704], new(8704));
    assert_eq!(img[8999], new(8999));
    assert_eq!(img[9000], base()[9000]);
}

#[test]
fn writes_past_the_end_extend_the_file_as_far_as_what_survived() {
    let len = base().len() as u64; // 12288
    let recs = vec![w(len + 1000, 5, 4096)]; // [13288, 17384): pieces [13288, 16384), [16384, 17384)
    let (img, _) = build(&base(), &recs, 1, FailedSync::KeepsDirty, &mut LoseAll);
    same(&img, &base(), "lost");
    let (img, _) = build(&base(), &recs, 1, FailedSync::KeepsDirty, &mut KeepAll);
    assert_eq!(img.len() as u64, len + 1000 + 4096);
    assert!(img[len as usize..len as usize + 1000]
        .iter()
        .all(|b| *b == 0));
    // Only the first piece's first sector (13288..13312, the rest of sector 25) survives.
    let mut c = Scripted::new(&[Fate::Torn(0b1), Fate::Lost], &[]);
    let (img, _) = build(&base(), &recs, 1, FailedSync::KeepsDirty, &mut c);
    assert_eq!(img.len(), 13312);
    assert!(img[13288..].iter().all(|b| *b == 5));
    assert!(img[12288..13288].iter().all(|b| *b == 0));
}

#[test]
fn punches_and_length_changes_apply_exactly_or_not_at_all() {
    let recs = vec![
        Rec::Punch {
            off: 4096,
            len: 1 << 20,
        }, // clipped at the end, length kept
        Rec::SetLen { len: 5000 },
        Rec::SetLen { len: 9000 },
    ];
    let (img, b) = build(&base(), &recs, 3, FailedSync::KeepsDirty, &mut KeepAll);
    let mut want = base();
    want[4096..].fill(0);
    want.truncate(5000);
    want.resize(9000, 0);
    same(&img, &want, "all applied");
    assert_eq!((b.meta_applied, b.meta_skipped), (3, 0));
    let (img, b) = build(&base(), &recs, 3, FailedSync::KeepsDirty, &mut LoseAll);
    same(&img, &base(), "none applied");
    assert_eq!((b.meta_applied, b.meta_skipped), (0, 3));
    // The punch survives, the cut to 5000 does not, the length set to 9000 does (it cuts).
    let mut c = Scripted::new(&[], &[true, false, true]);
    let (img, _) = build(&base(), &recs, 3, FailedSync::KeepsDirty, &mut c);
    let mut want = base();
    want[4096..].fill(0);
    want.truncate(9000);
    same(&img, &want, "punch and second length change");
    // Only the cut: the bytes before 5000 stay, the rest are gone for good.
    let mut c = Scripted::new(&[], &[false, true, false]);
    let (img, _) = build(&base(), &recs, 3, FailedSync::KeepsDirty, &mut c);
    same(&img, &base()[..5000], "the cut alone");
}

#[test]
fn surviving_versions_of_a_block_apply_in_trace_order() {
    let recs = vec![w(0, 1, 4096), w(0, 2, 4096)];
    let (img, _) = build(&base(), &recs, 2, FailedSync::KeepsDirty, &mut KeepAll);
    assert!(img[..4096].iter().all(|b| *b == 2));
    let mut c = Scripted::new(&[Fate::Kept, Fate::Lost], &[]);
    let (img, _) = build(&base(), &recs, 2, FailedSync::KeepsDirty, &mut c);
    assert!(img[..4096].iter().all(|b| *b == 1));
    let mut c = Scripted::new(&[Fate::Torn(0x0f), Fate::Torn(0x3c)], &[]);
    let (img, _) = build(&base(), &recs, 2, FailedSync::KeepsDirty, &mut c);
    let sector = |s: usize| img[s * 512];
    assert_eq!(
        (0..8).map(sector).collect::<Vec<_>>(),
        vec![1, 1, 2, 2, 2, 2, 0xa0, 0xa0]
    );
}

#[test]
fn nothing_at_or_after_the_crash_point_reaches_the_image() {
    let recs = vec![
        w(0, 1, 100),
        Rec::Sync,
        w(200, 2, 100),
        Rec::Sync,
        w(400, 3, 100),
    ];
    for crash in 0..=recs.len() {
        let (img, b) = build(&base(), &recs, crash, FailedSync::KeepsDirty, &mut KeepAll);
        assert_eq!(img[0] == 1, crash >= 1, "crash {crash}");
        assert_eq!(img[200] == 2, crash >= 3, "crash {crash}");
        assert_eq!(img[400] == 3, crash >= 5, "crash {crash}");
        assert_eq!(b.last_sync, image::last_sync_before(&recs, crash));
    }
    assert_eq!(image::last_sync_before(&recs, 1), None);
    assert_eq!(image::last_sync_before(&recs, 2), Some(1));
    assert_eq!(image::last_sync_before(&recs, 5), Some(3));
}

#[test]
fn a_failed_sync_can_lose_the_writes_before_it_for_good() {
    let recs = vec![
        w(0, 1, 100),
        Rec::Sync,
        w(100, 2, 100),
        Rec::Fault {
            op: FAULT_SYNC,
            errno: 5,
        },
        w(200, 3, 100),
        Rec::Fault {
            op: FAULT_WRITE,
            errno: 28,
        },
        Rec::Sync,
    ];
    let (img, b) = build(&base(), &recs, 7, FailedSync::LosesDirty, &mut KeepAll);
    assert_eq!((img[0], img[100], img[200]), (1, 0xa0, 3));
    assert_eq!(b.dropped_by_failed_sync, 1);
    assert!(!b.nothing_lost());
    let (img, b) = build(&base(), &recs, 7, FailedSync::KeepsDirty, &mut KeepAll);
    assert_eq!((img[0], img[100], img[200]), (1, 2, 3));
    assert_eq!(b.dropped_by_failed_sync, 0);
}

#[test]
fn random_images_are_reproducible_and_use_every_fate() {
    let recs: Vec<Rec> = (0..200).map(|i| w(i * 3000, i as u8, 9000)).collect();
    let (mut kept, mut lost, mut torn) = (0, 0, 0);
    for i in 0..50 {
        let seed = pc::image_seed(1234, i);
        let one = |seed| {
            let mut rng = Rng(seed);
            let profile = Profile::pick(&mut rng);
            build(
                &base(),
                &recs,
                200,
                FailedSync::KeepsDirty,
                &mut RandomChooser {
                    rng: &mut rng,
                    profile,
                },
            )
        };
        let (a, ba) = one(seed);
        let (b, _) = one(seed);
        same(&a, &b, &format!("image {i} is not a function of its seed"));
        kept += ba.kept;
        lost += ba.lost;
        torn += ba.torn;
    }
    assert!(kept > 0 && lost > 0 && torn > 0, "{kept} {lost} {torn}");
    assert_ne!(pc::image_seed(1234, 0), pc::image_seed(1234, 1));
    assert_ne!(pc::image_seed(1234, 0), pc::image_seed(1235, 0));
}

#[test]
fn torn_masks_are_proper_subsets_of_the_sectors() {
    let mut rng = Rng(99);
    let mut c = RandomChooser {
        rng: &mut rng,
        profile: Profile::Random {
            keep: 0.0,
            torn: 1.0,
        },
    };
    for sectors in 1..=8u32 {
        for _ in 0..200 {
            match c.piece(0, 0, 4096, sectors) {
                Fate::Torn(m) => {
                    assert!(sectors > 1);
                    assert!(
                        m != 0 && (m as u32) < (1 << sectors) - 1,
                        "{m:#b} of {sectors}"
                    );
                }
                Fate::Lost => assert_eq!(sectors, 1),
                Fate::Kept => panic!("kept with keep = 0"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timeline and markers

#[test]
fn the_timeline_counts_acknowledgements_and_calls() {
    assert_eq!(
        workload::decode_mark(call_mark(Call::Commit, false, 17)),
        workload::Marker::Call {
            call: Call::Commit,
            done: false,
            batch: 17
        }
    );
    assert_eq!(workload::decode_mark(5), workload::Marker::Ack(5));
    assert_eq!(workload::decode_mark(END), workload::Marker::End);
    assert!(matches!(
        workload::decode_mark(ACK_LIMIT + 3),
        workload::Marker::Unknown(_)
    ));
    let recs = vec![
        Rec::Mark(call_mark(Call::Commit, false, 0)),
        w(0, 1, 10),
        Rec::Mark(call_mark(Call::Commit, true, 0)),
        Rec::Mark(1),
        Rec::Sync,
        Rec::Mark(call_mark(Call::Commit, false, 1)),
        w(50_000, 1, 10),
        Rec::Mark(call_mark(Call::Commit, true, 1)),
        Rec::Mark(2),
        Rec::Mark(END),
    ];
    let t = Timeline::of(&recs, 40_000);
    assert_eq!(t.acked, vec![0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2]);
    assert_eq!(t.acks, vec![1, 2]);
    assert_eq!(t.during[2], Some((Call::Commit, 0)));
    assert_eq!(t.during[4], None);
    assert_eq!(t.first_growth, Some(6));
    assert!(t.ends_complete);
    assert!(t
        .place(7)
        .contains("1 batches acknowledged, during commit of batch 1"));
    // The durable batches at a crash point: those acknowledged before the last sync.
    let s = image::last_sync_before(&recs, 9).unwrap();
    assert_eq!(t.acked[s], 1);
    assert!(!Timeline::of(&recs[..9], 40_000).ends_complete);
}

// ---------------------------------------------------------------------------------------------
// Oracle

#[test]
fn the_oracle_accepts_whole_batches_only() {
    let models = Models::new(30, 20);
    for n in [0, 1, 7, 20, 30] {
        assert_eq!(oracle::prefix_of(models.after(n), &models), Ok(n));
    }
    // Batch 8 half applied: every op of it but the last.
    let mut ops = Vec::new();
    workload::batch(7, 20, |op| ops.push(op));
    let mut half = models.after(7).clone();
    for op in &ops[..ops.len() - 1] {
        workload::apply(&mut half, *op);
    }
    assert_ne!(&half, models.after(8));
    let e = oracle::prefix_of(&half, &models).unwrap_err();
    assert!(e.contains("no whole-batch prefix"), "{e}");
    // A value never written.
    let mut extra = models.after(5).clone();
    extra.entry(k(3)).or_default().insert(k(999_999));
    assert!(oracle::prefix_of(&extra, &models).is_err());
    // A key of a later batch.
    let mut later = models.after(5).clone();
    later.insert(k(29 * 40), [k(29)].into());
    assert!(oracle::prefix_of(&later, &models).is_err());
}

#[test]
fn the_oracle_rejects_files_that_lost_batches_or_are_damaged() {
    let dir = Scratch::new("pc-oracle");
    let path = dir.file("t.h5");
    let opts = hashdir::Options {
        checkpoint_bytes: 16 << 10,
        capacity: 64 << 20,
        ..Default::default()
    };
    let models = Models::new(3, 3);
    let base = pc::make_base(&path, &opts);
    // An empty file passes as 0 batches, and fails where batches were durable.
    pc::write_image(&path, &base);
    assert_eq!(oracle::check(&path, &opts, &models, 0, 1, 1), Ok(0));
    pc::write_image(&path, &base);
    let e = oracle::check(&path, &opts, &models, 2, 3, 1).unwrap_err();
    assert!(e.starts_with("lost durable batches"), "{e}");
    // A file that holds 2 batches where at most 1 was begun: a harness error it reports.
    let mut w = hashdir::Writer::open(&path, &opts).unwrap();
    for b in 0..2 {
        workload::batch(b, 3, |op| match op {
            workload::Op::Insert(key, v) => w.insert(&[key], &[v]).unwrap(),
            workload::Op::DeleteKey(key) => w.delete_keys(&[key]).unwrap(),
            workload::Op::DeletePair(key, v) => w.delete_pairs(&[key], &[v]).unwrap(),
        });
        w.commit().unwrap();
    }
    w.close().unwrap();
    let two = std::fs::read(&path).unwrap();
    assert_eq!(oracle::check(&path, &opts, &models, 0, 3, 1), Ok(2));
    pc::write_image(&path, &two);
    let e = oracle::check(&path, &opts, &models, 0, 1, 1).unwrap_err();
    assert!(e.contains("only 1 had been committed"), "{e}");
    // Everything the two batches wrote zeroed (both root slots with it): whatever the
    // engine makes of that, it is not a file holding the two durable batches.
    let mut broken = two.clone();
    let blocks = two.len().min(base.len()) / 4096;
    let mut zeroed = 0;
    for at in (0..blocks).map(|i| i * 4096) {
        if two[at..at + 4096] != base[at..at + 4096] {
            broken[at..at + 4096].fill(0);
            zeroed += 1;
        }
    }
    broken[base.len().min(two.len())..].fill(0);
    assert!(zeroed > 0);
    pc::write_image(&path, &broken);
    assert!(oracle::check(&path, &opts, &models, 2, 2, 1).is_err());
    // Nothing but zeros: not a file at all.
    pc::write_image(&path, &vec![0; two.len()]);
    let e = oracle::check(&path, &opts, &models, 0, 3, 1).unwrap_err();
    assert!(e.starts_with("writer open"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// The recorder against the parser, on a real run

/// A short run (sync mode): two sessions, a checkpoint, a GC pass.
pub fn tiny_plan() -> Plan {
    Plan {
        shrink: 100,
        sessions: vec![
            Session {
                batches: 0..4,
                checkpoint_every: Some(2),
                gc_after: &[],
                sync_after: &[1],
                end: End::Close,
            },
            Session {
                batches: 4..6,
                checkpoint_every: None,
                gc_after: &[4],
                sync_after: &[],
                end: End::Close,
            },
        ],
    }
}

#[test]
fn the_recorder_writes_what_the_parser_reads() {
    let dir = Scratch::new("pc-recorder");
    let path = dir.file("t.h5");
    let trace_path = dir.file("t.trace");
    let opts = hashdir::Options {
        sync_commit: true,
        checkpoint_bytes: 16 << 10,
        capacity: 64 << 20,
        ..Default::default()
    };
    let base = pc::make_base(&path, &opts);
    let rep = pc::run_child(
        "child_roles",
        "tiny",
        &path,
        &[("HASHDIR_IO_TRACE", trace_path.to_str().unwrap().to_string())],
    );
    assert!(rep.finished, "{rep:?}");
    assert_eq!(rep.acked, (0..6).collect::<Vec<_>>());
    let recs = trace::parse(&std::fs::read(&trace_path).unwrap()).unwrap();
    let t = Timeline::of(&recs, base.len() as u64);
    assert!(t.ends_complete);
    assert_eq!(t.acks, (1..=6).collect::<Vec<_>>());
    let counts = pc::Counts::of(&recs);
    assert!(counts.writes > 0 && counts.syncs > 0, "{counts:?}");
    // In sync mode every acknowledgement follows a sync made during its commit.
    for (i, r) in recs.iter().enumerate() {
        if let Rec::Mark(v) = r {
            if *v >= 1 && *v < ACK_LIMIT {
                let commit = recs[..i]
                    .iter()
                    .rposition(|r| *r == Rec::Mark(call_mark(Call::Commit, false, v - 1)))
                    .unwrap();
                assert!(
                    recs[commit..i].contains(&Rec::Sync),
                    "batch {} acknowledged without a sync during its commit",
                    v - 1
                );
            }
        }
    }
    // Every write the trace holds is in the file the writer left, unless a later operation
    // of the trace changed those bytes (checked by replaying it).
    // Past its last data extent (a punched tail) the file reads as zeros, up to its length.
    let mut left = pc::read_prefix(&path);
    left.resize(std::fs::metadata(&path).unwrap().len() as usize, 0);
    let (replayed, _) = build(
        &base,
        &recs,
        recs.len(),
        FailedSync::KeepsDirty,
        &mut KeepAll,
    );
    for (i, r) in recs.iter().enumerate() {
        if let Rec::Write { off, data } = r {
            let (a, b) = (*off as usize, *off as usize + data.len());
            assert!(
                b <= left.len(),
                "write {i} [{a}, {b}) past the file's end {}",
                left.len()
            );
            assert_eq!(
                left[a..b],
                replayed[a..b],
                "write {i}: the file and the replay differ"
            );
        }
    }
}
