package main

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestEveryProblemCodeHasAStatusAndIsInTheContract(t *testing.T) {
	var ours []string
	for code := range maps.Keys(problemStatus) {
		ours = append(ours, string(code))
	}
	slices.Sort(ours)
	documented := problemCodes(contractDocument().Components.Schemas["Problem"])
	if strings.Join(ours, ",") != strings.Join(documented, ",") {
		t.Errorf("problem codes: courier has %v, openapi.yaml documents %v", ours, documented)
	}
}
