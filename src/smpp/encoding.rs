//! Short-message text encoding for SMPP 3.4.
//!
//! Texts are sent in the GSM 03.38 default alphabet (incl. the extension
//! table) whenever possible, one septet per octet (unpacked, which is what
//! SMSCs expect over SMPP), and fall back to UCS-2 big-endian otherwise.
//! Long texts are split into concatenated segments carrying an 8-bit
//! reference UDH (default), a 16-bit reference UDH or SAR TLVs, or are sent
//! whole in one `message_payload` TLV for the SMSC to split
//! ([`Concatenation`], per route). A character is never split across two
//! segments, so every segment decodes on its own on a handset that lacks
//! reassembly.
//!
//! The project's SMSC simulator reuses [`decode`] and [`split_udh`].

use std::sync::atomic::{AtomicU16, AtomicU8, Ordering};

/// `data_coding` value for the GSM 03.38 default alphabet (SMSC default).
pub const DC_GSM7: u8 = 0x00;
/// `data_coding` value for IA5 / ASCII.
pub const DC_ASCII: u8 = 0x01;
/// `data_coding` value for ISO-8859-1.
pub const DC_LATIN1: u8 = 0x03;
/// `data_coding` value for UCS-2 (big-endian).
pub const DC_UCS2: u8 = 0x08;

/// Most segments a concatenated message can have (the UDH counts in one octet).
pub const MAX_SEGMENTS: usize = 255;

const GSM_SINGLE_LIMIT: usize = 160;
const GSM_SEGMENT_LIMIT: usize = 153;
// Expressed in octets: 70 / 67 UCS-2 code units of two octets each.
const UCS2_SINGLE_LIMIT: usize = 140;
const UCS2_SEGMENT_LIMIT: usize = 134;
// A 16-bit reference UDH is one octet longer: 152 septets / 66 UCS-2 units.
const GSM_SEGMENT_LIMIT_UDH16: usize = 152;
const UCS2_SEGMENT_LIMIT_UDH16: usize = 132;
/// Largest `message_payload` TLV value.
pub const MAX_PAYLOAD: usize = 65_535;

/// How a text longer than one segment is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Concatenation {
    /// Segments with an 8-bit reference UDH (IEI 0x00); the most widely supported.
    #[default]
    Udh8,
    /// Segments with a 16-bit reference UDH (IEI 0x08).
    Udh16,
    /// Segments without UDH, with sar_msg_ref_num / sar_total_segments /
    /// sar_segment_seqnum TLVs; the SMSC builds the UDH. Same sizes as
    /// [`Concatenation::Udh8`], since the handset still receives a UDH.
    Sar,
    /// One submit_sm with the whole text in the message_payload TLV; the
    /// SMSC splits it.
    MessagePayload,
}

const ESC: u8 = 0x1B;

/// GSM 03.38 default alphabet; index is the septet value. 0x1B (escape) is
/// a placeholder that is never matched because it is skipped on lookup.
const GSM_BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// GSM 03.38 extension table: (septet after the escape, character).
const GSM_EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Rotating concatenation reference; a counter is enough because the SMSC
/// keys reassembly by (source, destination, reference).
static NEXT_REFERENCE: AtomicU8 = AtomicU8::new(1);
/// Rotating 16-bit reference for [`Concatenation::Udh16`] and [`Concatenation::Sar`].
static NEXT_REFERENCE16: AtomicU16 = AtomicU16::new(1);

/// A text encoded into one or more `short_message` bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// `data_coding` to put in every submit_sm ([`DC_GSM7`] or [`DC_UCS2`]).
    pub data_coding: u8,
    /// Each segment's complete `short_message` (UDH included when `udhi`).
    pub segments: Vec<Vec<u8>>,
    /// Whether the segments start with a UDH (esm_class UDHI 0x40 required).
    pub udhi: bool,
    /// With [`Concatenation::Sar`] and more than one segment: the reference
    /// for sar_msg_ref_num (segment numbers follow the order of `segments`).
    pub sar_reference: Option<u16>,
    /// With [`Concatenation::MessagePayload`] and a text longer than one
    /// segment: the single entry of `segments` goes into message_payload.
    pub message_payload: bool,
}

/// Concatenation information element found in a UDH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concat {
    /// Reference number (8- or 16-bit in the PDU).
    pub reference: u16,
    /// Total number of segments.
    pub total: u8,
    /// 1-based sequence number of this segment.
    pub sequence: u8,
}

fn gsm_septets(c: char) -> Option<(u8, Option<u8>)> {
    if c != '\u{1B}' {
        if let Some(pos) = GSM_BASIC.iter().position(|&g| g == c) {
            return u8::try_from(pos).ok().map(|b| (b, None));
        }
    }
    GSM_EXTENSION
        .iter()
        .find(|(_, g)| *g == c)
        .map(|(code, _)| (ESC, Some(*code)))
}

/// Per-character octet groups; `None` if the text is not fully GSM-encodable.
fn gsm_units(text: &str) -> Option<Vec<Vec<u8>>> {
    text.chars()
        .map(|c| {
            gsm_septets(c).map(|(first, second)| match second {
                Some(s) => vec![first, s],
                None => vec![first],
            })
        })
        .collect()
}

fn ucs2_units(text: &str) -> Vec<Vec<u8>> {
    let mut buf = [0u16; 2];
    text.chars()
        .map(|c| {
            c.encode_utf16(&mut buf)
                .iter()
                .flat_map(|u| u.to_be_bytes())
                .collect()
        })
        .collect()
}

/// Returns whether every character of `text` exists in the GSM 03.38 alphabet.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| gsm_septets(c).is_some())
}

/// Encodes `text`, picking the next rotating concatenation reference.
pub fn encode(text: &str) -> Encoded {
    encode_with_reference(text, NEXT_REFERENCE.fetch_add(1, Ordering::Relaxed))
}

/// Encodes `text` for `mode`, picking the next rotating reference.
pub fn encode_as(text: &str, mode: Concatenation) -> Encoded {
    let reference = match mode {
        Concatenation::Udh8 => u16::from(NEXT_REFERENCE.fetch_add(1, Ordering::Relaxed)),
        Concatenation::Udh16 | Concatenation::Sar | Concatenation::MessagePayload => {
            NEXT_REFERENCE16.fetch_add(1, Ordering::Relaxed)
        }
    };
    encode_with(text, mode, reference)
}

/// Encodes `text` with a caller-chosen concatenation reference (used when
/// the text needs more than one segment).
///
/// More than [`MAX_SEGMENTS`] segments cannot be addressed by the UDH; the
/// caller must reject such an [`Encoded`] (see [`Encoded::segments`]).
pub fn encode_with_reference(text: &str, reference: u8) -> Encoded {
    encode_with(text, Concatenation::Udh8, u16::from(reference))
}

/// Encodes `text` for `mode` with a caller-chosen reference (truncated to
/// 8 bits for [`Concatenation::Udh8`]).
pub fn encode_with(text: &str, mode: Concatenation, reference: u16) -> Encoded {
    let gsm = gsm_units(text);
    let is_gsm = gsm.is_some();
    let (data_coding, units, single) = match gsm {
        Some(units) => (DC_GSM7, units, GSM_SINGLE_LIMIT),
        None => (DC_UCS2, ucs2_units(text), UCS2_SINGLE_LIMIT),
    };
    let per_segment = match (mode, is_gsm) {
        (Concatenation::Udh16, true) => GSM_SEGMENT_LIMIT_UDH16,
        (Concatenation::Udh16, false) => UCS2_SEGMENT_LIMIT_UDH16,
        (_, true) => GSM_SEGMENT_LIMIT,
        (_, false) => UCS2_SEGMENT_LIMIT,
    };
    let total_len: usize = units.iter().map(Vec::len).sum();
    let plain = |segments: Vec<Vec<u8>>, message_payload: bool| Encoded {
        data_coding,
        segments,
        udhi: false,
        sar_reference: None,
        message_payload,
    };
    if total_len <= single {
        return plain(vec![units.concat()], false);
    }
    if mode == Concatenation::MessagePayload {
        return plain(vec![units.concat()], true);
    }

    // Greedy packing over whole characters keeps escapes and surrogate pairs
    // inside one segment.
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let mut current: Vec<u8> = Vec::with_capacity(per_segment);
    for unit in units {
        if current.len() + unit.len() > per_segment {
            bodies.push(std::mem::take(&mut current));
        }
        current.extend_from_slice(&unit);
    }
    if !current.is_empty() {
        bodies.push(current);
    }

    let total = u8::try_from(bodies.len()).unwrap_or(u8::MAX);
    if mode == Concatenation::Sar {
        return Encoded {
            data_coding,
            segments: bodies,
            udhi: false,
            sar_reference: Some(reference),
            message_payload: false,
        };
    }
    let [ref_hi, ref_lo] = reference.to_be_bytes();
    let segments = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let seq = u8::try_from(i + 1).unwrap_or(u8::MAX);
            let mut sm = Vec::with_capacity(7 + body.len());
            if mode == Concatenation::Udh16 {
                sm.extend_from_slice(&[0x06, 0x08, 0x04, ref_hi, ref_lo, total, seq]);
            } else {
                sm.extend_from_slice(&[0x05, 0x00, 0x03, ref_lo, total, seq]);
            }
            sm.extend_from_slice(&body);
            sm
        })
        .collect();
    Encoded {
        data_coding,
        segments,
        udhi: true,
        sar_reference: None,
        message_payload: false,
    }
}

/// Splits a `short_message` that starts with a UDH into the concatenation
/// element (if any, 8- or 16-bit reference) and the payload after the UDH.
/// Returns `None` when the UDH length points past the end of the message.
pub fn split_udh(short_message: &[u8]) -> Option<(Option<Concat>, &[u8])> {
    let (&udhl, rest) = short_message.split_first()?;
    let udhl = usize::from(udhl);
    if rest.len() < udhl {
        return None;
    }
    let (mut ies, payload) = rest.split_at(udhl);
    let mut concat = None;
    while let [iei, len, tail @ ..] = ies {
        let len = usize::from(*len);
        if tail.len() < len {
            return None;
        }
        let (data, next) = tail.split_at(len);
        match (*iei, data) {
            (0x00, [reference, total, sequence]) => {
                concat = Some(Concat {
                    reference: u16::from(*reference),
                    total: *total,
                    sequence: *sequence,
                });
            }
            (0x08, [hi, lo, total, sequence]) => {
                concat = Some(Concat {
                    reference: u16::from_be_bytes([*hi, *lo]),
                    total: *total,
                    sequence: *sequence,
                });
            }
            _ => {}
        }
        ies = next;
    }
    Some((concat, payload))
}

/// Decodes a `short_message` payload (without UDH) for the given
/// `data_coding`: 0 (GSM 03.38 unpacked incl. extension), 1 (ASCII),
/// 3 (Latin-1) or 8 (UCS-2). Returns `None` for other codings or invalid
/// input.
pub fn decode(data_coding: u8, bytes: &[u8]) -> Option<String> {
    match data_coding {
        DC_GSM7 => decode_gsm(bytes),
        DC_ASCII => bytes
            .iter()
            .map(|&b| b.is_ascii().then_some(char::from(b)))
            .collect(),
        DC_LATIN1 => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        DC_UCS2 => {
            if !bytes.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

fn decode_gsm(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let mut iter = bytes.iter();
    while let Some(&b) = iter.next() {
        if b == ESC {
            let &code = iter.next()?;
            // 03.38: an unknown extension code is shown as the basic character.
            let c = GSM_EXTENSION
                .iter()
                .find(|(e, _)| *e == code)
                .map(|(_, c)| *c)
                .or_else(|| GSM_BASIC.get(usize::from(code)).copied())?;
            out.push(c);
        } else {
            out.push(*GSM_BASIC.get(usize::from(b))?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// Every segment's payload decoded on its own, then joined.
    fn decode_each(e: &Encoded) -> Option<String> {
        e.segments
            .iter()
            .map(|s| {
                let payload = if e.udhi {
                    split_udh(s)?.1
                } else {
                    s.as_slice()
                };
                decode(e.data_coding, payload)
            })
            .collect()
    }

    fn gsm_chars() -> Vec<char> {
        GSM_BASIC
            .iter()
            .copied()
            .filter(|c| *c != '\u{1B}')
            .chain(GSM_EXTENSION.iter().map(|(_, c)| *c))
            .collect()
    }

    fn modes() -> impl Strategy<Value = Concatenation> {
        prop_oneof![
            Just(Concatenation::Udh8),
            Just(Concatenation::Udh16),
            Just(Concatenation::Sar),
            Just(Concatenation::MessagePayload),
        ]
    }

    fn check(text: &str, mode: Concatenation) -> Result<(), TestCaseError> {
        let e = encode_with(text, mode, 0x1234);
        // Each segment decodes alone: no escape or surrogate pair is split.
        let decoded = decode_each(&e);
        prop_assert_eq!(decoded.as_deref(), Some(text));
        let (single, per) = match (e.data_coding, mode) {
            (DC_GSM7, Concatenation::Udh16) => (160, 152),
            (DC_GSM7, _) => (160, 153),
            (_, Concatenation::Udh16) => (140, 132),
            _ => (140, 134),
        };
        if e.segments.len() == 1 && !e.udhi && e.sar_reference.is_none() {
            prop_assert!(e.message_payload || e.segments[0].len() <= single);
        } else {
            for s in &e.segments {
                let payload = if e.udhi {
                    split_udh(s).unwrap().1
                } else {
                    s.as_slice()
                };
                prop_assert!(payload.len() <= per);
                // A full segment could not have taken one more character.
                prop_assert!(!payload.is_empty());
            }
        }
        if e.data_coding == DC_GSM7 {
            prop_assert!(is_gsm7(text));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_unicode_roundtrips(text in any::<String>(), mode in modes()) {
            check(&text, mode)?;
        }

        #[test]
        fn gsm_texts_roundtrip_in_gsm(
            chars in prop::collection::vec(prop::sample::select(gsm_chars()), 0..500),
            mode in modes(),
        ) {
            let text: String = chars.into_iter().collect();
            prop_assert_eq!(encode_with(&text, mode, 7).data_coding, DC_GSM7);
            check(&text, mode)?;
        }

        #[test]
        fn astral_heavy_texts_never_split_pairs(
            text in "[a-z😀🎉𝄞€]{0,300}",
            mode in modes(),
        ) {
            check(&text, mode)?;
        }
    }

    #[test]
    fn udh16_and_sar_layouts() {
        let text = "a".repeat(305);
        let e = encode_with(&text, Concatenation::Udh16, 0xABCD);
        assert_eq!(e.segments.len(), 3, "152 septets per segment");
        assert_eq!(&e.segments[0][..7], &[0x06, 0x08, 0x04, 0xAB, 0xCD, 3, 1]);
        let (c, _) = split_udh(&e.segments[2]).unwrap();
        assert_eq!(
            c,
            Some(Concat {
                reference: 0xABCD,
                total: 3,
                sequence: 3
            })
        );
        let e = encode_with(&text, Concatenation::Sar, 0xABCD);
        assert!(!e.udhi);
        assert_eq!(e.sar_reference, Some(0xABCD));
        assert_eq!(
            e.segments.iter().map(Vec::len).collect::<Vec<_>>(),
            [153, 152]
        );
        let e = encode_with(&text, Concatenation::MessagePayload, 1);
        assert!(e.message_payload);
        assert_eq!(e.segments, vec![text.as_bytes().to_vec()]);
        // Short texts are plain in every mode.
        for mode in [Concatenation::Sar, Concatenation::MessagePayload] {
            let e = encode_with("hi", mode, 1);
            assert!(!e.message_payload && e.sar_reference.is_none() && !e.udhi);
        }
    }

    fn payloads(e: &Encoded) -> Vec<&[u8]> {
        e.segments
            .iter()
            .map(|s| {
                if e.udhi {
                    split_udh(s).unwrap().1
                } else {
                    s.as_slice()
                }
            })
            .collect()
    }

    fn roundtrip(e: &Encoded) -> String {
        decode(e.data_coding, &payloads(e).concat()).unwrap()
    }

    #[test]
    fn ascii_is_gsm_one_octet_per_char() {
        let e = encode("123456 is your code");
        assert_eq!(e.data_coding, DC_GSM7);
        assert!(!e.udhi);
        assert_eq!(e.segments, vec![b"123456 is your code".to_vec()]);
    }

    #[test]
    fn gsm_specials_and_extension() {
        let e = encode("@£$¥");
        assert_eq!(e.segments, vec![vec![0x00, 0x01, 0x02, 0x03]]);
        let e = encode("{}[]~\\|^€");
        assert_eq!(e.data_coding, DC_GSM7);
        assert_eq!(e.segments[0].len(), 18);
        assert_eq!(&e.segments[0][..4], &[ESC, 0x28, ESC, 0x29]);
        assert_eq!(&e.segments[0][16..], &[ESC, 0x65]);
    }

    #[test]
    fn extension_chars_count_twice_for_limit() {
        // 80 escapes = 160 septets fits; 81 does not.
        assert_eq!(encode(&"€".repeat(80)).segments.len(), 1);
        let e = encode(&"€".repeat(81));
        assert!(e.udhi);
        assert_eq!(e.segments.len(), 2);
    }

    #[test]
    fn gsm_160_and_161() {
        let e = encode(&"a".repeat(160));
        assert_eq!(e.segments.len(), 1);
        assert!(!e.udhi);
        let e = encode_with_reference(&"a".repeat(161), 7);
        assert!(e.udhi);
        assert_eq!(e.segments.len(), 2);
        assert_eq!(&e.segments[0][..6], &[5, 0, 3, 7, 2, 1]);
        assert_eq!(&e.segments[1][..6], &[5, 0, 3, 7, 2, 2]);
        assert_eq!(e.segments[0].len(), 6 + 153);
        assert_eq!(e.segments[1].len(), 6 + 8);
    }

    #[test]
    fn ucs2_70_and_71() {
        let e = encode(&"ж".repeat(70));
        assert_eq!(e.data_coding, DC_UCS2);
        assert_eq!(e.segments.len(), 1);
        assert_eq!(e.segments[0].len(), 140);
        let e = encode(&"ж".repeat(71));
        assert_eq!(e.segments.len(), 2);
        assert_eq!(e.segments[0].len(), 6 + 134);
        assert_eq!(e.segments[1].len(), 6 + 8);
    }

    #[test]
    fn surrogate_pair_not_split() {
        // 66 BMP units then an emoji (2 units) would straddle unit 67/68.
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(10));
        let e = encode(&text);
        assert_eq!(e.segments.len(), 2);
        let p = payloads(&e);
        assert_eq!(p[0].len(), 132);
        assert_eq!(decode(DC_UCS2, p[0]).unwrap(), "ж".repeat(66));
        assert!(decode(DC_UCS2, p[1]).unwrap().starts_with('😀'));
        assert_eq!(roundtrip(&e), text);
    }

    #[test]
    fn escape_not_split() {
        // 152 septets then an escape sequence that would straddle 153/154.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(20));
        let e = encode(&text);
        let p = payloads(&e);
        assert_eq!(p[0].len(), 152);
        assert_eq!(&p[1][..2], &[ESC, 0x65]);
        assert_eq!(decode(DC_GSM7, p[1]).unwrap().chars().next(), Some('€'));
        assert_eq!(roundtrip(&e), text);
    }

    #[test]
    fn decode_encode_roundtrip() {
        let texts = [
            "",
            "Your code is 123456",
            "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà",
            "{}[]~\\|^€ and more",
            "Κωδικός: 123456",
            "رمزك هو 123456 🔐",
            "emoji 😀😃😄 at end",
            &"x".repeat(300),
            &"€".repeat(200),
            &"🔐".repeat(100),
        ];
        for t in texts {
            assert_eq!(roundtrip(&encode(t)), t, "text {t:?}");
        }
    }

    #[test]
    fn other_codings() {
        assert_eq!(decode(DC_ASCII, b"abc").unwrap(), "abc");
        assert_eq!(decode(DC_ASCII, &[0x80]), None);
        assert_eq!(decode(DC_LATIN1, &[0x61, 0xE9]).unwrap(), "aé");
        assert_eq!(decode(DC_UCS2, &[0x00]), None);
        assert_eq!(decode(0x04, b"x"), None);
        assert_eq!(decode(DC_GSM7, &[0x80]), None);
        assert_eq!(decode(DC_GSM7, &[ESC]), None);
    }

    #[test]
    fn udh_parsing() {
        let (c, p) = split_udh(&[5, 0, 3, 9, 2, 1, b'h']).unwrap();
        assert_eq!(
            c,
            Some(Concat {
                reference: 9,
                total: 2,
                sequence: 1
            })
        );
        assert_eq!(p, b"h");
        let (c, _) = split_udh(&[6, 8, 4, 0x12, 0x34, 3, 2]).unwrap();
        assert_eq!(c.unwrap().reference, 0x1234);
        assert_eq!(split_udh(&[9, 0, 3]), None);
        assert_eq!(split_udh(&[]), None);
        assert_eq!(split_udh(&[3, 0, 5, 1]), None);
    }
}
