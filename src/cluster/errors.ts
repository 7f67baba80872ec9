/** A change every node must see, refused because the cluster's store (Redis) cannot take it now. */
export class ClusterUnavailableError extends Error {}
