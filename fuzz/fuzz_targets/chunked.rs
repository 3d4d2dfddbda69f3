//! The chunked-body decoder: any bytes, split at any points, decode to the same result as in
//! one piece (data or error), never panic, and a decoded body is never longer than its input.
#![no_main]
use gogate::fuzzing::dechunk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (body, cuts) = input;
    let whole = dechunk(&[&body]);
    // Split where the second input says (each byte: a step of 1..=32 bytes).
    let mut pieces = Vec::new();
    let mut at = 0;
    for step in cuts.iter().map(|c| usize::from(c % 32) + 1) {
        if at >= body.len() {
            break;
        }
        let end = (at + step).min(body.len());
        pieces.push(&body[at..end]);
        at = end;
    }
    if at < body.len() {
        pieces.push(&body[at..]);
    }
    let split = dechunk(&pieces);
    match (&whole, &split) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert!(a.len() <= body.len());
        }
        (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{a} vs {b}"),
        _ => panic!("one piece: {whole:?}; {} pieces: {split:?}", pieces.len()),
    }
});
