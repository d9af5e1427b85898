//! After an upload through the whole stack, every service's `/metrics` moved by exactly what
//! happened: each service owns its registry, so the figures are this stack's alone.

use vod_contracts::VideoStatus;
use vod_tests::exposition::Exposition;
use vod_tests::media::generate_clip;
use vod_tests::{Stack, TestEnv};

async fn summed(stack: &Stack, urls: &[String]) -> Exposition {
    let mut all = Exposition::default();
    for url in urls {
        all.samples.extend(stack.metrics(url).await.samples);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_moves_every_services_counters_by_what_happened() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 2, "320x240");
    let bytes = std::fs::read(&clip).expect("clip");
    let size = bytes.len() as f64;

    let upload = stack.upload_in_pieces(&bytes, "clip.mp4", 2).await;
    let video = stack.wait_until_settled(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");

    let gateway = stack.metrics(&stack.gateway_url).await;
    assert_eq!(
        gateway.sum("gateway_upload_bytes_received_total", &[]),
        size
    );
    assert_eq!(gateway.sum("gateway_chunks_rejected_total", &[]), 0.0);
    let pieces = gateway.sum("gateway_chunks_accepted_total", &[]);
    assert!(pieces >= 2.0, "two PATCHes send at least two pieces");
    let patches = [
        ("route", "/v1/uploads/{id}"),
        ("method", "PATCH"),
        ("status", "204"),
    ];
    assert_eq!(gateway.sum("gateway_http_requests_total", &patches), 2.0);
    assert_eq!(
        gateway.sum(
            "gateway_http_requests_total",
            &[
                ("route", "/v1/uploads"),
                ("method", "POST"),
                ("status", "201")
            ]
        ),
        1.0
    );

    let uploaders = summed(&stack, &stack.uploader_urls).await;
    let flow_to = |from: &str, to: &str| {
        uploaders.sum(
            "uploader_state_transitions_total",
            &[("entity", "flow"), ("from", from), ("to", to)],
        )
    };
    assert_eq!(flow_to("NONE", "UPLOADING"), 1.0);
    assert_eq!(flow_to("UPLOADING", "PROCESSING"), 1.0);
    assert_eq!(flow_to("PROCESSING", "READY"), 1.0);
    assert_eq!(
        uploaders.sum(
            "uploader_state_transitions_total",
            &[("entity", "video"), ("to", "READY")]
        ),
        1.0
    );
    assert_eq!(
        uploaders.sum(
            "uploader_commands_total",
            &[("kind", "chunk"), ("result", "ok")]
        ),
        pieces,
        "every piece the gateway saw accepted was a chunk the uploaders stored"
    );
    assert_eq!(
        uploaders.sum("uploader_chunk_duration_seconds_count", &[("result", "ok")]),
        pieces
    );
    for queue in ["commands", "outcomes", "progress"] {
        let name = format!("{}.{queue}", env.queue_prefix);
        assert_eq!(
            uploaders
                .matching("uploader_queue_messages", &[("queue", &name)])
                .count(),
            2,
            "each uploader reports the depth of {name}"
        );
    }

    let fflow = summed(&stack, &stack.fflow_urls).await;
    assert_eq!(fflow.sum("fflow_encodes_succeeded_total", &[]), 1.0);
    assert_eq!(fflow.sum("fflow_encodes_failed_total", &[]), 0.0);
    assert_eq!(fflow.sum("fflow_ffmpeg_active", &[]), 0.0);
    assert_eq!(fflow.sum("fflow_bytes_spooled_total", &[]), size);
    assert_eq!(
        fflow.sum("fflow_ftp_uploads_total", &[("result", "ok")]),
        1.0
    );

    let holder = stack.metrics(&stack.holder_url).await;
    let files_received = holder.sum("holder_ftp_uploads_received_total", &[]);
    assert!(files_received > 0.0);
    assert_eq!(
        files_received,
        fflow.sum("fflow_ftp_files_uploaded_total", &[]),
        "holder received every file fflow stored"
    );
    let playlists_served = |exposition: &Exposition| {
        exposition.sum(
            "holder_http_requests_total",
            &[("kind", "playlist"), ("status", "200")],
        )
    };
    let before = playlists_served(&holder);
    let playback = video.playback.expect("playback URLs");
    let (_, master) = stack.fetch(&playback.hls).await;
    let holder = stack.metrics(&stack.holder_url).await;
    assert_eq!(playlists_served(&holder), before + 1.0);
    assert!(
        holder.sum("holder_http_bytes_served_total", &[("kind", "playlist")])
            >= master.len() as f64
    );

    stack.shutdown().await;
}
