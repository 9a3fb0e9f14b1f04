//! Natives for data that arrives as text, all deterministic so replay gives the same values:
//! `fromcsv(delimiter)` reads CSV into rows of strings, `hash(algorithm)` digests a string, and
//! `uuid_of` gives a string's name-based UUID. Each charges the meter for what it reads.

use jaq_core::native::{Filter, Fun, bome, run, unary, v};
use jaq_core::{Error, RunPtr, ValR};
use jaq_json::Val;
use sha1::Digest as _;

use super::limits::{bytes, n, steps};
use super::metered::{MVal, Metered};

/// The natives, ready for the compiler.
pub(super) fn funs() -> impl Iterator<Item = Fun<Metered>> {
    let natives: [Filter<RunPtr<Metered>>; 3] = [
        ("fromcsv", v(1), |cv| unary(cv, |x, d| from_csv(x.0, &d.0))),
        ("hash", v(1), |cv| unary(cv, |x, a| hash(x.0, &a.0))),
        ("uuid_of", v(0), |cv| bome(uuid_of(cv.1.0))),
    ];
    natives.into_iter().map(run::<Metered>)
}

fn string(v: &Val, what: &str) -> Result<Vec<u8>, Error<MVal>> {
    match v {
        Val::TStr(s) => Ok(s.to_vec()),
        other => Err(Error::str(format_args!("{what} takes a string, not {other}"))),
    }
}

/// Rows of fields, as RFC 4180 reads them: a quoted field may hold the delimiter, doubled quotes
/// and line breaks; rows may differ in length; `\r\n` and `\n` both end a row.
fn from_csv(v: Val, delimiter: &Val) -> ValR<MVal> {
    let text = string(&v, "fromcsv")?;
    let delim = match delimiter {
        Val::TStr(d) if d.len() == 1 => d[0],
        other => {
            return Err(Error::str(format_args!("fromcsv takes a delimiter of one ASCII character, not {other}")));
        }
    };
    steps(n(text.len()));
    // Every field becomes a string of at least its bytes, plus a cell per field and per row.
    bytes(n(text.len()).saturating_mul(4));
    let mut reader =
        csv::ReaderBuilder::new().delimiter(delim).has_headers(false).flexible(true).from_reader(text.as_slice());
    let mut rows = Vec::new();
    for record in reader.byte_records() {
        let record = record.map_err(|e| Error::str(format_args!("cannot read CSV: {e}")))?;
        let fields: MVal = record.iter().map(|f| MVal::from(String::from_utf8_lossy(f).into_owned())).collect();
        rows.push(fields);
    }
    Ok(rows.into_iter().collect())
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The lower-case hex digest of the string's UTF-8 bytes: `MD5`, `SHA-1`, `SHA-256`, `SHA-384`
/// or `SHA-512` (the algorithms of the States Language's `States.Hash`).
fn hash(v: Val, algorithm: &Val) -> ValR<MVal> {
    let text = string(&v, "hash")?;
    steps(n(text.len()));
    let name = match algorithm {
        Val::TStr(a) => String::from_utf8_lossy(a).to_ascii_uppercase(),
        _ => String::new(),
    };
    let digest = match name.as_str() {
        "MD5" => hex(&md5::Md5::digest(&text)),
        "SHA-1" | "SHA1" => hex(&sha1::Sha1::digest(&text)),
        "SHA-256" | "SHA256" => hex(&sha2::Sha256::digest(&text)),
        "SHA-384" | "SHA384" => hex(&sha2::Sha384::digest(&text)),
        "SHA-512" | "SHA512" => hex(&sha2::Sha512::digest(&text)),
        _ => {
            return Err(Error::str(format_args!(
                "hash takes MD5, SHA-1, SHA-256, SHA-384 or SHA-512, not {algorithm}"
            )));
        }
    };
    Ok(MVal::from(digest))
}

/// RFC 4122's URL namespace: `uuid_of` gives what `uuid.uuid5(uuid.NAMESPACE_URL, text)` gives
/// in Python, so a value can be checked outside baton.
const URL_NAMESPACE: [u8; 16] =
    [0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8];

/// The name-based UUID (RFC 4122 version 5, URL namespace) of the string.
fn uuid_of(v: Val) -> ValR<MVal> {
    let text = string(&v, "uuid_of")?;
    steps(n(text.len()));
    let mut h = sha1::Sha1::new();
    h.update(URL_NAMESPACE);
    h.update(&text);
    let d = h.finalize();
    let mut u = [0u8; 16];
    u.copy_from_slice(&d[..16]);
    u[6] = (u[6] & 0x0f) | 0x50;
    u[8] = (u[8] & 0x3f) | 0x80;
    let x = hex(&u);
    Ok(MVal::from(format!("{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..])))
}
