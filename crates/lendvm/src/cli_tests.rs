use std::os::unix::ffi::OsStringExt;

use super::*;

fn p(args: &[&str]) -> Result<Command, UsageError> {
    parse(args.iter().map(OsString::from).collect())
}

fn run(args: &[&str]) -> RunArgs {
    match p(args) {
        Ok(Command::Run(r)) => r,
        other => panic!("{args:?} is not a run: {other:?}"),
    }
}

#[test]
fn no_arguments_run_the_demo() {
    assert_eq!(p(&[]).unwrap(), Command::Run(RunArgs::default()));
    assert_eq!(p(&["run"]).unwrap(), p(&[]).unwrap());
    assert_eq!(p(&["--json"]).unwrap(), p(&["run", "--json"]).unwrap());
}

#[test]
fn run_options_parse_in_both_spellings() {
    let r = run(&[
        "run",
        "--image",
        "g.elf",
        "--memory=size=512M,mode=private,at=0x100000",
        "--vcpus",
        "2",
        "--json",
    ]);
    assert_eq!(r.image.as_deref(), Some(std::path::Path::new("g.elf")));
    assert_eq!(
        r.memory,
        MemorySpec {
            size: 512 << 20,
            mode: MemoryMode::Private,
            at: 0x10_0000
        }
    );
    assert_eq!((r.vcpus, r.json), (2, true));
    let k = run(&[
        "run",
        "--kernel",
        "vmlinuz",
        "--initrd=initrd.img",
        "--cmdline",
        "console=ttyS0 quiet",
        "--serial",
        "file=/tmp/out",
    ]);
    assert_eq!(k.cmdline.as_deref(), Some("console=ttyS0 quiet"));
    assert_eq!(k.serial, SerialSpec::File("/tmp/out".into()));
    assert_eq!(
        k.initrd.as_deref(),
        Some(std::path::Path::new("initrd.img"))
    );
}

// Issue 9 item 1: file names are bytes.
#[test]
fn paths_that_are_not_utf8_are_kept_byte_for_byte() {
    let image = OsString::from_vec(b"guest-\xff\xfe.elf".to_vec());
    let serial = OsString::from_vec(b"file=log-\xc3\x28".to_vec());
    let args = vec![
        OsString::from("run"),
        OsString::from("--image"),
        image.clone(),
        OsString::from("--serial"),
        serial,
    ];
    let Ok(Command::Run(r)) = parse(args) else {
        panic!("not a run")
    };
    assert_eq!(r.image.unwrap().into_os_string(), image);
    assert_eq!(
        r.serial,
        SerialSpec::File(PathBuf::from(OsString::from_vec(b"log-\xc3\x28".to_vec())))
    );
}

#[test]
fn arguments_that_are_not_utf8_where_text_is_needed_are_usage_errors() {
    for (opt, want) in [
        ("--cmdline", "--cmdline: \"a\\xFFb\" is not valid UTF-8"),
        ("--memory", "--memory: \"a\\xFFb\" is not valid UTF-8"),
        ("--vcpus", "--vcpus: \"a\\xFFb\" is not valid UTF-8"),
    ] {
        let args = vec![
            OsString::from("run"),
            OsString::from("--kernel"),
            OsString::from("k"),
            OsString::from(opt),
            OsString::from_vec(b"a\xffb".to_vec()),
        ];
        assert_eq!(parse(args).unwrap_err().0, want);
    }
    let cmd = vec![OsString::from_vec(b"\xff".to_vec())];
    assert_eq!(
        parse(cmd).unwrap_err().0,
        "unknown command \"\\xFF\" (commands: run, info, help)"
    );
    let opt = vec![OsString::from_vec(b"--\xff".to_vec())];
    assert!(parse(opt).unwrap_err().0.contains("unknown option"));
}

#[test]
fn sizes_take_binary_suffixes() {
    assert_eq!(parse_size("4096").unwrap(), 4096);
    assert_eq!(parse_size("64K").unwrap(), 64 << 10);
    assert_eq!(parse_size("2g").unwrap(), 2 << 30);
    assert_eq!(parse_size("0x1000").unwrap(), 4096);
    for bad in ["12Q", "", "K", "0x", "+5", "-1", " 5", "5 ", "1é"] {
        assert!(parse_size(bad).is_err(), "{bad:?}");
    }
    assert!(
        parse_size("99999999999G")
            .unwrap_err()
            .0
            .contains("does not fit in 64 bits")
    );
}

// Issue 9 item 3: a range that wraps is refused with the range.
#[test]
fn memory_past_the_end_of_the_address_space_is_refused_naming_the_range() {
    let err = p(&[
        "run",
        "--image",
        "g",
        "--memory",
        "size=64M,at=0xfffffffffc000000",
    ])
    .unwrap_err();
    assert_eq!(
        err.0,
        "--memory: guest RAM [0xfffffffffc000000, +0x4000000) passes the end of the 64-bit address space"
    );
    // The last page below 2^64 ends exactly at 2^64: that wraps too.
    assert!(parse_memory("size=4K,at=0xfffffffffffff000").is_err());
    // One page lower fits.
    let m = parse_memory("size=4K,at=0xffffffffffffe000").unwrap();
    assert_eq!(
        m.range(),
        Some(0xffff_ffff_ffff_e000..0xffff_ffff_ffff_f000)
    );
}

#[test]
fn bad_arguments_say_what_is_wrong() {
    for (args, want) in [
        (&["bogus"][..], "unknown command \"bogus\""),
        (
            &["run", "--vcpus", "0"][..],
            "--vcpus: \"0\" is not a number",
        ),
        (
            &["run", "--vcpus", "4294967296"][..],
            "from 1 to 4294967295",
        ),
        (&["run", "--vcpus"][..], "--vcpus needs a number"),
        (&["run", "--memory", "size=1000"][..], "multiple of 4 KiB"),
        (
            &["run", "--memory", "at=0x1001"][..],
            "0x1001 is not page-aligned",
        ),
        (
            &["run", "--memory", "mode=steal"][..],
            "not lend, share or private",
        ),
        (&["run", "--memory", "colour=red"][..], "unknown key"),
        (&["run", "--memory", "size"][..], "is not KEY=VALUE"),
        (&["run", "--frobnicate"][..], "unknown option --frobnicate"),
        (&["run", "-x"][..], "unknown option -x"),
        (&["run", "stray"][..], "unexpected argument \"stray\""),
        (&["run", "--json=yes"][..], "--json takes no value"),
        (&["info", "x"][..], "only --json"),
        (
            &["run", "--serial", "tty"][..],
            "not stdio, file=PATH or off",
        ),
        (&["run", "--serial", "file="][..], "file= needs a path"),
        (&["run", "--image", ""][..], "--image needs a path"),
        (&["run", "--cmdline", "quiet"][..], "need --kernel"),
        (&["run", "--image", "a", "--kernel", "b"][..], "give one"),
        (
            &["run", "--vcpus", "2"][..],
            "--vcpus needs --image or --kernel",
        ),
        (&["run", "--serial", "off"][..], "--serial needs --image"),
    ] {
        let err = p(args).unwrap_err().to_string();
        assert!(
            err.contains(want),
            "{args:?}: {err:?} should mention {want:?}"
        );
        assert!(!err.contains('\n'), "{args:?}: one line: {err:?}");
    }
}

#[test]
fn option_values_may_start_with_a_dash() {
    let r = run(&["--image", "-odd-name.elf"]);
    assert_eq!(
        r.image.as_deref(),
        Some(std::path::Path::new("-odd-name.elf"))
    );
}

#[test]
fn help_wins_wherever_it_is() {
    assert_eq!(p(&["--help"]).unwrap(), Command::Help);
    assert_eq!(p(&["help"]).unwrap(), Command::Help);
    assert_eq!(p(&["-h"]).unwrap(), Command::Help);
    assert_eq!(p(&["run", "-h"]).unwrap(), Command::Help);
    assert_eq!(p(&["info", "--help"]).unwrap(), Command::Help);
    assert_eq!(
        p(&["info", "--json"]).unwrap(),
        Command::Info { json: true }
    );
}

#[test]
fn help_explains_every_option_the_parser_takes() {
    for opt in [
        "--image",
        "--kernel",
        "--initrd",
        "--cmdline",
        "--serial",
        "--memory",
        "--vcpus",
        "--json",
        "--no-irqchip",
        "file=PATH",
        "size=SIZE",
        "mode=MODE",
        "at=ADDR",
        "lend",
        "share",
        "private",
        "info",
        "run",
        "0xee",
        "SIGINT",
        "SIGTERM",
        "SIGHUP",
        "141",
    ] {
        assert!(HELP.contains(opt), "{opt}");
    }
    // Every long option the parser accepts is spelled in the help.
    for opt in [
        "image",
        "kernel",
        "initrd",
        "cmdline",
        "serial",
        "memory",
        "vcpus",
        "json",
        "no-irqchip",
    ] {
        let needs_value = !matches!(opt, "json" | "no-irqchip");
        let mut args = vec!["run".to_string(), format!("--{opt}")];
        if needs_value {
            args.push(
                match opt {
                    "serial" => "off",
                    "memory" => "size=4K",
                    "vcpus" => "1",
                    _ => "x",
                }
                .into(),
            );
        }
        if opt != "image" {
            args.extend(["--kernel".into(), "k".into()]);
        }
        let parsed = parse(args.iter().map(OsString::from).collect());
        assert!(parsed.is_ok(), "{opt}: {parsed:?}");
        assert!(HELP.contains(&format!("--{opt}")), "{opt}");
    }
}

// Found by the cli_args fuzz target: an option name holding a newline (or
// a terminal escape) broke the one-line error.
#[test]
fn option_names_with_control_characters_are_escaped_in_the_one_line_error() {
    for (args, want) in [
        (&["run", "--mem\nory"][..], "unknown option \"--mem\\nory\""),
        (&["run", "-\u{1b}"][..], "unknown option \"-\\u{1b}\""),
        (
            &["info", "--js\ron"][..],
            "`info` takes only --json, got \"--js\\ron\"",
        ),
        (
            &["run", "--json=a\nb"][..],
            "--json takes no value, got \"a\\nb\"",
        ),
    ] {
        let err = p(args).unwrap_err().0;
        assert_eq!(err, want, "{args:?}");
        assert!(!err.chars().any(char::is_control), "{err:?}");
    }
}
