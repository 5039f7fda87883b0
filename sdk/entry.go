package sdk

// Entry is a plugin kind served by another SDK package (sdk/scheduler
// registers one): the module's manifest and configure exports and the
// kind's entry points go to it when no admission plugin is registered.
type Entry interface {
	// ManifestJSON is the module's hostapi.Manifest JSON.
	ManifestJSON() []byte
	// Configure takes the settings JSON (empty when none).
	Configure(settings []byte) error
	// Serve answers one call of export with input; the result stays valid
	// until the next call.
	Serve(export string, input []byte) []byte
}

// entry is the Entry installed by RegisterEntry.
var entry Entry

// RegisterEntry installs e as the module's plugin (from init, through the
// kind's Register function).
func RegisterEntry(e Entry) { entry = e }

// AppendManifest appends m as the JSON encoding/json would give
// hostapi.Manifest.
func AppendManifest(dst []byte, m Manifest) []byte { return appendManifest(dst, m) }
