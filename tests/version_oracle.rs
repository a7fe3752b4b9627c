//! Compares mbd's version ordering with `dpkg --compare-versions` on generated pairs.

use mbd::version::Version;
use std::cmp::Ordering;
use std::process::Command;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const DIGITS: &[&str] = &["0", "1", "2", "9", "10", "01", "00", "100", "3"];
const SEPARATORS: &[&str] = &[
    ".", "~", "+", "~~", "a", "b", "z", "A", "Z", "~rc", "+dfsg", ".", "+b", "~bpo",
];

fn part(rng: &mut Rng, allow_hyphen: bool) -> String {
    let mut s = rng.pick(DIGITS).to_string();
    for _ in 0..(rng.next() % 4) {
        let sep = if allow_hyphen && rng.chance(10) {
            "-"
        } else {
            rng.pick(SEPARATORS)
        };
        s.push_str(sep);
        if rng.chance(70) {
            s.push_str(rng.pick(DIGITS));
        }
    }
    s
}

fn version(rng: &mut Rng) -> String {
    let mut s = String::new();
    if rng.chance(15) {
        s.push_str(rng.pick(&["0:", "1:", "2:"]));
    }
    let has_revision = rng.chance(60);
    s.push_str(&part(rng, has_revision));
    if has_revision {
        s.push('-');
        s.push_str(&part(rng, false));
    }
    s
}

/// Either an independent version or a small edit of `base` (near-equal pairs find bugs).
fn partner(rng: &mut Rng, base: &str) -> String {
    if rng.chance(40) {
        return version(rng);
    }
    let mut s = base.to_string();
    match rng.next() % 4 {
        0 => s.push_str(rng.pick(&["~", "+", ".0", "a", "~~", "0"])),
        1 => {
            s = s.replacen(
                rng.pick(&["1", "0", "~", "+", "."]),
                rng.pick(&["0", "1", "~", "+", ".", "a"]),
                1,
            )
        }
        2 => s = format!("0:{}", s.split_once(':').map_or(s.as_str(), |(_, r)| r)),
        _ => s.push_str("-0"),
    }
    s
}

fn dpkg_compare(pairs: &[(String, String)]) -> Vec<Ordering> {
    // One shell per chunk keeps the process count down to one dpkg per comparison.
    let script = r#"while read -r a b; do
        if dpkg --compare-versions "$a" lt "$b"; then echo L
        elif dpkg --compare-versions "$a" eq "$b"; then echo E
        else echo G; fi; done"#;
    let input: String = pairs.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
    let mut child = Command::new("sh")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sh");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(input.as_bytes()).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| match l {
            "L" => Ordering::Less,
            "E" => Ordering::Equal,
            _ => Ordering::Greater,
        })
        .collect()
}

#[test]
fn ten_thousand_generated_pairs_order_as_dpkg_orders_them() {
    let mut rng = Rng(0x6d62_645f_7665_7273);
    let mut pairs = Vec::new();
    while pairs.len() < 10_000 {
        let a = version(&mut rng);
        let b = partner(&mut rng, &a);
        // dpkg would reject what we reject; keep only valid pairs (an edit can break one).
        if Version::parse(&a).is_ok() && Version::parse(&b).is_ok() {
            pairs.push((a, b));
        }
    }
    let chunks: Vec<Vec<(String, String)>> = pairs.chunks(2_500).map(|c| c.to_vec()).collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|c| std::thread::spawn(move || dpkg_compare(&c)))
        .collect();
    let expected: Vec<Ordering> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(expected.len(), pairs.len(), "dpkg answered every pair");
    let (mut less, mut equal, mut greater) = (0, 0, 0);
    let mismatches: Vec<String> = pairs
        .iter()
        .zip(&expected)
        .filter_map(|((a, b), want)| {
            match want {
                Ordering::Less => less += 1,
                Ordering::Equal => equal += 1,
                Ordering::Greater => greater += 1,
            }
            let got = Version::parse(a).unwrap().cmp(&Version::parse(b).unwrap());
            (got != *want).then(|| format!("{a} vs {b}: dpkg {want:?}, mbd {got:?}"))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
    // The generator must exercise all three outcomes, or the oracle proves little.
    assert!(
        less > 1000 && greater > 1000 && equal > 100,
        "L {less} E {equal} G {greater}"
    );
}
