//! Statuses, metadata and trailers travel intact, in both response shapes.

use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::{TestServer, echo, within};
use tonic::Code;
use tonic::metadata::{BinaryMetadataValue, MetadataValue};

#[tokio::test]
async fn every_status_code_arrives_with_its_message() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for code in 1..=16 {
        // Unary errors come back trailers-only; streaming ones as trailers after the head.
        let request = EchoRequest {
            fail_code: code,
            fail_message: format!("failure {code} ✓ 100%"),
            ..echo("")
        };
        let status = within("unary", client.unary(request.clone()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::from(code));
        assert_eq!(status.message(), format!("failure {code} ✓ 100%"));
        assert_eq!(
            status.metadata().get("x-failure").unwrap(),
            "yes",
            "trailing metadata, code {code}"
        );

        let request = EchoRequest {
            response_count: 2,
            fail_after: 1,
            ..request
        };
        let mut stream = within("open", client.server_stream(request))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            within("first", stream.message())
                .await
                .unwrap()
                .unwrap()
                .index,
            0
        );
        let status = within("failure", stream.message()).await.unwrap_err();
        assert_eq!(status.code(), Code::from(code));
        assert_eq!(status.message(), format!("failure {code} ✓ 100%"));
        assert_eq!(status.metadata().get("x-failure").unwrap(), "yes");
    }
}

#[tokio::test]
async fn status_details_survive_both_response_shapes() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let details = vec![0x01, 0x02, 0xff, 0x00];
    let request = EchoRequest {
        fail_code: Code::Aborted as i32,
        fail_details: details.clone(),
        ..echo("")
    };
    let status = within("unary", client.unary(request.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.details()),
        (Code::Aborted, &details[..])
    );

    let request = EchoRequest {
        response_count: 1,
        fail_after: 1,
        ..request
    };
    let mut stream = within("open", client.server_stream(request))
        .await
        .unwrap()
        .into_inner();
    within("first", stream.message()).await.unwrap().unwrap();
    let status = within("failure", stream.message()).await.unwrap_err();
    assert_eq!(
        (status.code(), status.details()),
        (Code::Aborted, &details[..])
    );
}

#[tokio::test]
async fn metadata_travels_both_ways_ascii_and_binary() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = tonic::Request::new(echo("meta"));
    request
        .metadata_mut()
        .insert("x-echo-token", MetadataValue::from_static("abc 123"));
    request.metadata_mut().insert_bin(
        "x-echo-bin",
        BinaryMetadataValue::from_bytes(&[0, 1, 2, 255, b'\n']),
    );
    let response = within("unary", client.unary(request)).await.unwrap();
    assert_eq!(response.metadata().get("x-echo-token").unwrap(), "abc 123");
    assert_eq!(
        response
            .metadata()
            .get_bin("x-echo-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        &[0, 1, 2, 255, b'\n']
    );
}
