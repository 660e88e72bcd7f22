/** Image references podshell builds and uses by default. */
export const SANDBOX_IMAGE = 'localhost/podshell-sandbox:latest'
export const GATEWAY_IMAGE = 'localhost/podshell-gateway:latest'
/** The bootstrapped base rootfs (`podman import`) used by offline builds. */
export const BASE_IMAGE_OFFLINE = 'localhost/podshell-base:bookworm'
/** Label holding the content hash of an image's build inputs (rebuild only when it changes). */
export const INPUT_HASH_LABEL = 'io.podshell.input-hash'
