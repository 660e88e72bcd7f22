/** Image references podshell builds and uses by default. */
export const SANDBOX_IMAGE = 'localhost/podshell-sandbox:latest'
export const GATEWAY_IMAGE = 'localhost/podshell-gateway:latest'
/** The bootstrapped base rootfs (`podman import`) used by offline builds. */
export const BASE_IMAGE_OFFLINE = 'localhost/podshell-base:bookworm'
/** Label holding the content hash of an image's build inputs (rebuild only when it changes). */
export const INPUT_HASH_LABEL = 'io.podshell.input-hash'
/** Label holding the content hash of the gateway's application files (podshell + node): a stale gateway is rebuilt. */
export const APP_HASH_LABEL = 'io.podshell.app-hash'
/** Label recording the base image an image was built from (a rebuild reuses it without network). */
export const BASE_LABEL = 'io.podshell.base'
/** Base image of online builds (fully qualified: no short-name resolution). */
export const DEFAULT_REGISTRY_BASE = 'docker.io/library/debian:bookworm-slim'
/** The Debian release every podshell image is built on. */
export const DEBIAN_SUITE = 'bookworm'
/** Label holding the podshell version that built an image (informational). */
export const VERSION_LABEL = 'io.podshell.version'
