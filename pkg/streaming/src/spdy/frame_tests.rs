//! Frame encoding and decoding round trips and wire layouts.
use super::*;

fn all_frames() -> Vec<Frame> {
    let headers = vec![
        ("streamtype".to_string(), "data".to_string()),
        ("port".to_string(), "8080".to_string()),
        ("requestid".to_string(), "0".to_string()),
    ];
    vec![
        Frame::SynStream {
            stream_id: 1,
            associated_id: 0,
            priority: 0,
            flags: 0,
            headers: headers.clone(),
        },
        Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: vec![],
        },
        Frame::Headers {
            stream_id: 3,
            flags: FLAG_FIN,
            headers,
        },
        Frame::RstStream {
            stream_id: 5,
            status: RST_CANCEL,
        },
        Frame::Settings {
            flags: 0,
            entries: vec![(0, 7, 65536), (1, 4, 100)],
        },
        Frame::Ping { id: 1 },
        Frame::GoAway {
            last_good_stream_id: 7,
            status: 0,
        },
        Frame::WindowUpdate {
            stream_id: 1,
            delta: 4096,
        },
        Frame::Data {
            stream_id: 1,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"hello"),
        },
        Frame::Data {
            stream_id: 2,
            flags: 0,
            data: Bytes::new(),
        },
    ]
}

#[tokio::test]
async fn frames_round_trip() {
    let mut c = HeaderCompressor::new().unwrap();
    let mut wire = Vec::new();
    for f in all_frames() {
        wire.extend(encode(&f, &mut c).unwrap());
    }
    let mut d = HeaderDecompressor::new();
    let mut r = &wire[..];
    for f in all_frames() {
        assert_eq!(read_frame(&mut r, &mut d).await.unwrap(), Some(f));
    }
    assert_eq!(read_frame(&mut r, &mut d).await.unwrap(), None);
}

#[test]
fn wire_layout() {
    let mut c = HeaderCompressor::new().unwrap();
    let ping = encode(&Frame::Ping { id: 3 }, &mut c).unwrap();
    assert_eq!(ping, [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 3]);
    let data = Frame::Data {
        stream_id: 2,
        flags: FLAG_FIN,
        data: Bytes::from_static(b"ab"),
    };
    assert_eq!(
        encode(&data, &mut c).unwrap(),
        [0, 0, 0, 2, 1, 0, 0, 2, b'a', b'b']
    );
    let rst = Frame::RstStream {
        stream_id: 9,
        status: RST_CANCEL,
    };
    assert_eq!(
        encode(&rst, &mut c).unwrap(),
        [0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 5]
    );
    let h = vec![("StreamType".to_string(), "error\0x".to_string())];
    assert_eq!(header(&h, "streamtype"), Some("error"));
}
