package recipes

// DecodeCount lets the external tests read counter nodes.
var DecodeCount = decodeCount
