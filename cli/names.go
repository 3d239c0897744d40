package cli

import "math/rand/v2"

// Words of generated function names, "brave-otter" style: readable, valid
// function names (lowercase and '-').
var (
	nameAdjectives = []string{
		"agile", "amber", "bold", "brave", "bright", "brisk", "calm", "clever",
		"cosmic", "crisp", "daring", "eager", "fancy", "fast", "fluffy", "frosty",
		"gentle", "golden", "happy", "hidden", "humble", "jolly", "keen", "kind",
		"lively", "lucky", "mellow", "merry", "misty", "nimble", "noble", "plucky",
		"polite", "proud", "quick", "quiet", "rapid", "rustic", "shiny", "silent",
		"sleepy", "snowy", "solid", "sunny", "swift", "tidy", "vivid", "witty",
	}
	nameNouns = []string{
		"badger", "beaver", "bison", "comet", "cedar", "crane", "dolphin", "falcon",
		"fern", "finch", "fox", "gecko", "glacier", "heron", "ibis", "koala",
		"lemur", "lynx", "maple", "marmot", "meadow", "moose", "newt", "otter",
		"owl", "panda", "pebble", "pine", "puffin", "quokka", "raven", "reef",
		"river", "robin", "salmon", "seal", "sparrow", "spruce", "squid", "stork",
		"swan", "tapir", "tiger", "toucan", "walrus", "willow", "wombat", "yak",
	}
)

// randomName returns a readable function name like "brave-otter".
func randomName() string {
	return nameAdjectives[rand.IntN(len(nameAdjectives))] + "-" + nameNouns[rand.IntN(len(nameNouns))]
}
