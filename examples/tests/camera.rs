//! The camera example's loop on frames that need no camera: a directory of images and a Motion
//! JPEG file made here, through the traffic detector on the CPU; the Motion JPEG splitter and
//! decoder; YUYV conversion; and the HTTP stream, read by a client.

mod common;

use common::{copy_traffic_frames, scratch, session, testdata, traffic_mjpeg};
use edgetpu::vision::image::{self, RgbImage};
use edgetpu_examples::frames::{self, CaptureOptions, FrameSource};
use edgetpu_examples::http::{MjpegServer, BOUNDARY};
use edgetpu_examples::live::{self, FrameReport, LiveOptions};
use edgetpu_examples::mjpeg::{self, JpegEnd, MjpegReader};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

fn run(source: &mut dyn FrameSource, options: &LiveOptions, server: Option<&MjpegServer>) -> Vec<FrameReport> {
    let mut s = session(common::TRAFFIC_MODEL, "cpu");
    let mut reports = Vec::new();
    let n = live::run(&mut s, source, options, server, |r| reports.push(r.clone())).unwrap();
    assert_eq!(n, reports.len());
    reports
}

#[test]
fn detects_in_a_directory_of_frames_and_writes_each_annotated_frame() {
    let dir = scratch("camera-dir");
    let frames_dir = dir.join("frames");
    std::fs::create_dir(&frames_dir).unwrap();
    copy_traffic_frames(&frames_dir);
    std::fs::write(frames_dir.join("notes.txt"), "not an image").unwrap();
    let mut source = frames::open(&frames_dir, &CaptureOptions::default()).unwrap();
    assert!(source.describe().contains("2 images"), "{}", source.describe());
    let options = LiveOptions { threshold: 0.3, output: Some(dir.join("out-{frame}.png")), ..LiveOptions::default() };
    let reports = run(source.as_mut(), &options, None);

    let names: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["0001.bmp", "0002.bmp"]);
    // The LSTM state outputs of this model are all zero, so each frame matches its golden.
    common::assert_traffic_golden(&reports[0].detections, "frame0001", 0.3);
    common::assert_traffic_golden(&reports[1].detections, "frame0002_chained", 0.3);
    for (k, r) in reports.iter().enumerate() {
        assert_eq!((r.width, r.height), (256, 256));
        assert!(r.fps > 0.0 && r.latency_ms >= r.invoke_ms && r.invoke_ms > 0.0, "{r:?}");
        let drawn = image::open(dir.join(format!("out-{k:05}.png"))).unwrap().to_rgb8();
        let original = image::open(frames_dir.join(&r.name)).unwrap().to_rgb8();
        assert_eq!(drawn.dimensions(), original.dimensions());
        // The status line sits on a black band in the top-left corner, in yellow.
        assert_eq!(drawn.get_pixel(0, 0).0, [0, 0, 0]);
        let yellow = (0..7)
            .flat_map(|y| (0..40).map(move |x| (x, y)))
            .filter(|&(x, y)| drawn.get_pixel(x, y).0 == [255, 255, 0]);
        assert!(yellow.count() > 10);
        // Each box's outline is drawn in its class colour.
        let b = reports[k].detections[0].bbox;
        let colour = edgetpu::vision::draw::colour(reports[k].detections[0].id);
        assert_eq!(*drawn.get_pixel(b.xmin.floor() as u32, ((b.ymin + b.ymax) / 2.0) as u32), colour);
    }
    assert!(!dir.join("out-00002.png").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn detects_in_a_motion_jpeg_file() {
    let dir = scratch("camera-mjpeg");
    let (stream, jpegs) = traffic_mjpeg();
    let path = dir.join("traffic.mjpeg");
    std::fs::write(&path, &stream).unwrap();
    let mut source = frames::open(&path, &CaptureOptions::default()).unwrap();
    let options = LiveOptions { threshold: 0.3, ..LiveOptions::default() };
    let reports = run(source.as_mut(), &options, None);
    assert_eq!(reports.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["frame 0", "frame 1"]);
    // JPEG changes the pixels a little: the same objects come out, with close scores. The
    // strongest detection of the golden (class 1, 0.48) leads in both frames.
    for (r, jpeg) in reports.iter().zip(&jpegs) {
        let top = &r.detections[0];
        assert_eq!(top.id, 1, "{r:?}");
        assert!((top.score - 0.48).abs() < 0.05, "{r:?}");
        // Each frame is exactly the JPEG it was made from, decoded.
        let direct = image::load_from_memory(jpeg).unwrap().to_rgb8();
        let mut s = session(common::TRAFFIC_MODEL, "cpu");
        let want = s.detect(&image::DynamicImage::ImageRgb8(direct), 0.3, None).unwrap().value;
        assert_eq!(r.detections, want);
    }
    // A frame limit stops early.
    let mut source = frames::open(&path, &CaptureOptions::default()).unwrap();
    let options = LiveOptions { max_frames: Some(1), ..options };
    assert_eq!(run(source.as_mut(), &options, None).len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A reader that hands out one byte per read, as a slow pipe might.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.len().min(1).min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn splits_motion_jpeg_on_its_markers() {
    let (stream, jpegs) = traffic_mjpeg();
    let all = |r: &mut dyn FnMut() -> Option<Vec<u8>>| std::iter::from_fn(r).collect::<Vec<_>>();
    let mut reader = MjpegReader::new(&stream[..]);
    assert_eq!(all(&mut || reader.next_frame().unwrap()), jpegs);
    assert_eq!(reader.frames(), 2);
    assert_eq!(reader.skipped_bytes(), (stream.len() - jpegs[0].len() - jpegs[1].len()) as u64);
    let mut reader = MjpegReader::new(Trickle(&stream));
    assert_eq!(all(&mut || reader.next_frame().unwrap()), jpegs);

    // A thumbnail inside an APP1 segment (its own SOI and EOI) does not end the frame.
    let mut with_thumb = jpegs[0][..2].to_vec();
    let thumb = [0xFF, 0xD8, 0xFF, 0xD9];
    with_thumb.extend_from_slice(&[0xFF, 0xE1, 0x00, 2 + thumb.len() as u8]);
    with_thumb.extend_from_slice(&thumb);
    with_thumb.extend_from_slice(&jpegs[0][2..]);
    assert_eq!(mjpeg::jpeg_end(&with_thumb), JpegEnd::At(with_thumb.len()));
    assert_eq!(mjpeg::decode(&with_thumb).unwrap(), mjpeg::decode(&jpegs[0]).unwrap());

    // Cut short: an error naming where the frame started; garbage alone: no frame.
    let cut = &stream[..stream.len() - 100];
    let mut reader = MjpegReader::new(cut);
    assert!(reader.next_frame().unwrap().is_some());
    let e = format!("{:#}", reader.next_frame().unwrap_err());
    assert!(e.contains("frame 1") && e.contains("cut short"), "{e}");
    assert_eq!(MjpegReader::new(&b"no jpeg \xFF here"[..]).next_frame().unwrap(), None);
    assert_eq!(mjpeg::jpeg_end(&jpegs[0][..1000]), JpegEnd::NeedMore);
    assert!(matches!(mjpeg::jpeg_end(b"\xFF\xD8\x00\x01"), JpegEnd::Invalid(_)));

    let dir = scratch("mjpeg-errors");
    let p = dir.join("empty.mjpg");
    std::fs::write(&p, b"not a video").unwrap();
    let e = format!("{:#}", frames::open(&p, &CaptureOptions::default()).unwrap().next_frame().unwrap_err());
    assert!(e.contains("empty.mjpg") && e.contains("no JPEG frame"), "{e}");
    let e = format!("{:#}", frames::open(&dir, &CaptureOptions::default()).err().unwrap());
    assert!(e.contains("no .png, .jpg or .bmp"), "{e}");
    let e = format!("{:#}", frames::open(&dir.join("missing"), &CaptureOptions::default()).err().unwrap());
    assert!(e.contains("missing") && e.contains("/dev/video0"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn decodes_webcam_frames_without_huffman_tables() {
    let img = image::open(testdata().join("cat.bmp")).unwrap().to_rgb8();
    let jpeg = mjpeg::encode(&img, 90).unwrap();
    assert!(mjpeg::has_huffman_tables(&jpeg));
    // Cut every DHT segment out, as UVC webcams send their frames.
    let mut stripped = jpeg[..2].to_vec();
    let mut i = 2;
    while jpeg[i + 1] != 0xDA {
        let len = 2 + u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        if jpeg[i + 1] != 0xC4 {
            stripped.extend_from_slice(&jpeg[i..i + len]);
        }
        i += len;
    }
    stripped.extend_from_slice(&jpeg[i..]);
    assert!(stripped.len() < jpeg.len() && !mjpeg::has_huffman_tables(&stripped));
    assert!(image::load_from_memory(&stripped).is_err(), "the image crate alone cannot decode it");
    assert_eq!(mjpeg::decode(&stripped).unwrap(), mjpeg::decode(&jpeg).unwrap());
}

#[test]
fn converts_yuyv_to_rgb() {
    // Black and white, full red and a darker red (BT.601, limited range), 4 bytes of padding.
    let data = [16, 128, 235, 128, 81, 90, 41, 240, 0, 0, 0, 0];
    let rgb = frames::yuyv_to_rgb(&data, 4, 1, 12).unwrap();
    let px: Vec<[u8; 3]> = rgb.pixels().map(|p| p.0).collect();
    assert_eq!(px, [[0, 0, 0], [255, 255, 255], [255, 0, 0], [208, 0, 0]]);
    // Blue, and two mid tones sharing their chroma; the second row starts at the stride.
    let rgb = frames::yuyv_to_rgb(&[41, 240, 41, 110, 9, 9, 126, 100, 60, 160], 2, 2, 6).unwrap();
    assert_eq!(rgb.get_pixel(0, 0).0, [0, 0, 255]);
    assert_eq!((rgb.get_pixel(0, 1).0, rgb.get_pixel(1, 1).0), ([179, 113, 72], [102, 36, 0]));
    assert!(frames::yuyv_to_rgb(&data, 3, 1, 12).is_err(), "odd width");
    let e = frames::yuyv_to_rgb(&data, 4, 2, 12).unwrap_err().to_string();
    assert!(e.contains("needs 20 bytes") && e.contains("gave 12"), "{e}");
}

/// Reads one multipart part (headers and body) from an MJPEG HTTP stream.
fn read_part(reader: &mut impl BufRead) -> (Vec<String>, Vec<u8>) {
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end().to_string();
        if line.is_empty() && !headers.is_empty() {
            break;
        }
        if !line.is_empty() {
            headers.push(line);
        }
    }
    let len: usize = headers.iter().find_map(|h| h.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    (headers, body)
}

fn get(server: &MjpegServer, path: &str) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    BufReader::new(s)
}

#[test]
fn serves_the_annotated_frames_as_an_mjpeg_stream() {
    let server = MjpegServer::bind("127.0.0.1:0").unwrap();
    assert!(server.local_addr().ip().is_loopback());
    let mut other = String::new();
    get(&server, "/favicon.ico").read_to_string(&mut other).unwrap();
    assert!(other.starts_with("HTTP/1.0 404"), "{other}");

    let mut client = get(&server, "/");
    let mut status = String::new();
    client.read_line(&mut status).unwrap();
    assert_eq!(status.trim_end(), "HTTP/1.0 200 OK");
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        client.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        headers.push(line.trim_end().to_string());
    }
    assert!(headers.contains(&format!("Content-Type: multipart/x-mixed-replace; boundary={BOUNDARY}")), "{headers:?}");

    // The loop publishes each annotated frame; the client gets JPEGs of the frame's size.
    let dir = scratch("camera-http");
    copy_traffic_frames(&dir);
    let mut source = frames::open(&dir, &CaptureOptions::default()).unwrap();
    let options = LiveOptions { threshold: 0.3, max_frames: Some(1), ..LiveOptions::default() };
    let reports = run(source.as_mut(), &options, Some(&server));
    assert_eq!(server.clients(), 1);
    let (part, body) = read_part(&mut client);
    assert_eq!(part[0], format!("--{BOUNDARY}"));
    assert!(part.contains(&"Content-Type: image/jpeg".to_string()), "{part:?}");
    assert_eq!(body[..2], [0xFF, 0xD8], "a JPEG starts with SOI");
    let frame = mjpeg::decode(&body).unwrap();
    assert_eq!(frame.dimensions(), (reports[0].width, reports[0].height));

    // A later frame reaches the same client.
    let blank = RgbImage::new(32, 24);
    server.publish(mjpeg::encode(&blank, 80).unwrap());
    let (_, body) = read_part(&mut client);
    assert_eq!(mjpeg::decode(&body).unwrap().dimensions(), (32, 24));
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}
