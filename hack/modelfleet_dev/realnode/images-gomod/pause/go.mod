// The sandbox ("pause") image of the real node: holds a pod's namespaces until it is told to stop.
module modelfleet.local/hack/realnode/pause

go 1.26.0
