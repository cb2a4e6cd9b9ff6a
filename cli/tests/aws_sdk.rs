//! The AWS SDK for Rust (`aws-sdk-s3`) against a real `baobab dev` process: multipart upload
//! with checksums, presigned URLs, a conditional PUT, and single-PUT checksums that the SDK
//! itself validates on GET.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;

const MIB: usize = 1024 * 1024;

/// A `baobab dev` process for one test; stopped (SIGTERM, then SIGKILL) on drop.
struct Dev {
    child: Child,
    dir: PathBuf,
    endpoint: String,
    key: String,
    secret: String,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Four consecutive free ports on 127.0.0.1 (S3 and three storage nodes).
fn free_port_block() -> u16 {
    for _ in 0..200 {
        let base = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("an ephemeral port");
        if base > 65000 {
            continue;
        }
        if (base..base + 4).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no block of 4 free ports");
}

fn env_value(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("export {name}=")))
        .map(str::to_string)
}

fn start_dev() -> Dev {
    let dir = std::env::temp_dir().join(format!("baobab-sdk-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port_block();
    let log = std::fs::File::create(dir.join("dev.log")).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_baobab"))
        .args(["dev", "--data-dir"])
        .arg(dir.join("data"))
        .args([
            "--s3-port",
            &port.to_string(),
            "--retired-data-grace-secs",
            "1",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .spawn()
        .expect("baobab dev starts");
    let env_file: &Path = &dir.join("data/dev.env");
    let deadline = Instant::now() + Duration::from_secs(90);
    let text = loop {
        if let Ok(t) = std::fs::read_to_string(env_file) {
            if t.contains("AWS_SECRET_ACCESS_KEY") {
                break t;
            }
        }
        assert!(Instant::now() < deadline, "baobab dev not ready after 90 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    Dev {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        key: env_value(&text, "AWS_ACCESS_KEY_ID").expect("key id"),
        secret: env_value(&text, "AWS_SECRET_ACCESS_KEY").expect("secret"),
        dir,
    }
}

fn client(dev: &Dev) -> Client {
    let http = aws_smithy_http_client::Builder::new().build_http();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&dev.endpoint)
        .credentials_provider(Credentials::new(&dev.key, &dev.secret, None, None, "test"))
        .force_path_style(true)
        .http_client(http)
        .build();
    Client::from_conf(conf)
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

async fn body(out: aws_sdk_s3::operation::get_object::GetObjectOutput) -> Vec<u8> {
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_multipart_presigned_conditional_and_checksums() {
    let dev = start_dev();
    let s3 = client(&dev);
    let bucket = "sdk";
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create bucket");

    // Multipart with CRC32 part checksums: a COMPOSITE object checksum.
    let parts = [bytes(5 * MIB, 1), bytes(MIB + 3, 2)];
    let up = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key("mp")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .expect("create upload");
    let upload_id = up.upload_id().expect("upload id").to_string();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let r = s3
            .upload_part()
            .bucket(bucket)
            .key("mp")
            .upload_id(&upload_id)
            .part_number(n)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(p.clone()))
            .send()
            .await
            .expect("upload part");
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(r.e_tag().expect("etag"))
                .checksum_crc32(r.checksum_crc32().expect("part crc32"))
                .build(),
        );
    }
    let completed = s3
        .complete_multipart_upload()
        .bucket(bucket)
        .key("mp")
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .expect("complete");
    assert!(completed.e_tag().expect("etag").ends_with("-2\""));
    let got = s3
        .get_object()
        .bucket(bucket)
        .key("mp")
        .send()
        .await
        .expect("get");
    assert_eq!(
        body(got).await,
        [parts[0].clone(), parts[1].clone()].concat()
    );
    let head = s3
        .head_object()
        .bucket(bucket)
        .key("mp")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("head");
    assert!(head.checksum_crc32().expect("object crc32").ends_with("-2"));
    let part2 = s3
        .get_object()
        .bucket(bucket)
        .key("mp")
        .part_number(2)
        .send()
        .await
        .expect("get part 2");
    assert_eq!(part2.parts_count(), Some(2));
    assert_eq!(body(part2).await, parts[1]);

    // Presigned PUT and GET through a plain HTTP client.
    let presign = PresigningConfig::expires_in(Duration::from_secs(300)).expect("presign config");
    let put_req = s3
        .put_object()
        .bucket(bucket)
        .key("presigned")
        .presigned(presign.clone())
        .await
        .expect("presign put");
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut req = http::Request::builder().method("PUT").uri(put_req.uri());
    for (name, value) in put_req.headers() {
        req = req.header(name, value);
    }
    let resp = http
        .request(
            req.body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"presigned body",
            )))
            .expect("request"),
        )
        .await
        .expect("presigned put");
    assert_eq!(resp.status(), 200);
    let get_req = s3
        .get_object()
        .bucket(bucket)
        .key("presigned")
        .presigned(presign)
        .await
        .expect("presign get");
    let resp = http
        .request(
            http::Request::get(get_req.uri())
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("presigned get");
    assert_eq!(resp.status(), 200);
    let got = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&got[..], b"presigned body");

    // Conditional PUT: the second If-None-Match: * on one key is refused with 412.
    s3.put_object()
        .bucket(bucket)
        .key("once")
        .if_none_match("*")
        .body(ByteStream::from_static(b"first"))
        .send()
        .await
        .expect("first conditional put");
    let second = s3
        .put_object()
        .bucket(bucket)
        .key("once")
        .if_none_match("*")
        .body(ByteStream::from_static(b"second"))
        .send()
        .await;
    let err = second.expect_err("second conditional put must fail");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(412));
    let got = s3
        .get_object()
        .bucket(bucket)
        .key("once")
        .send()
        .await
        .expect("get");
    assert_eq!(body(got).await, b"first");

    // Single-PUT checksums: stored, returned, and validated by the SDK on GET.
    for alg in [
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha256,
        ChecksumAlgorithm::Crc32C,
    ] {
        let key = format!("cs-{}", alg.as_str());
        let data = bytes(3 * MIB + 11, 7);
        let put = s3
            .put_object()
            .bucket(bucket)
            .key(&key)
            .checksum_algorithm(alg.clone())
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .expect("checksummed put");
        let got = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .expect("get with checksum mode");
        let (put_cs, got_cs) = match alg {
            ChecksumAlgorithm::Crc64Nvme => (
                put.checksum_crc64_nvme().map(str::to_string),
                got.checksum_crc64_nvme().map(str::to_string),
            ),
            ChecksumAlgorithm::Sha256 => (
                put.checksum_sha256().map(str::to_string),
                got.checksum_sha256().map(str::to_string),
            ),
            _ => (
                put.checksum_crc32_c().map(str::to_string),
                got.checksum_crc32_c().map(str::to_string),
            ),
        };
        assert!(put_cs.is_some(), "{key}: PUT answered its checksum");
        assert_eq!(put_cs, got_cs, "{key}");
        assert_eq!(body(got).await, data, "{key}");
    }
}
