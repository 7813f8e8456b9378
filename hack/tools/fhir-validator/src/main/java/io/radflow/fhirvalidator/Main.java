package io.radflow.fhirvalidator;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.parser.DataFormatException;
import ca.uhn.fhir.parser.IParser;
import ca.uhn.fhir.parser.StrictErrorHandler;
import ca.uhn.fhir.util.FhirTerser;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.StringReader;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import javax.xml.XMLConstants;
import javax.xml.transform.stream.StreamSource;
import javax.xml.validation.Schema;
import javax.xml.validation.SchemaFactory;
import javax.xml.validation.Validator;
import org.hl7.fhir.instance.model.api.IBase;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.Bundle;
import org.hl7.fhir.r4.model.CodeSystem;
import org.hl7.fhir.r4.model.CodeableConcept;
import org.hl7.fhir.r4.model.Coding;
import org.hl7.fhir.r4.model.ElementDefinition;
import org.hl7.fhir.r4.model.Enumerations.BindingStrength;
import org.hl7.fhir.r4.model.Resource;
import org.hl7.fhir.r4.model.StructureDefinition;
import org.hl7.fhir.r4.model.ValueSet;
import org.xml.sax.ErrorHandler;
import org.xml.sax.SAXParseException;

/**
 * An offline FHIR R4 checker for radflow's AuditEvents, built only from what Maven Central
 * serves here: HAPI FHIR's R4 model and parser (hapi-fhir-structures-r4) and HL7's R4
 * definitions (hapi-fhir-validation-resources-r4). HAPI's FhirInstanceValidator
 * (hapi-fhir-validation, org.hl7.fhir.validation) is not served, so this does what it would do
 * for these resources, with HL7's own artefacts:
 *
 * <ol>
 *   <li>structure: HAPI's strict JSON parser (unknown elements, bad primitive values, codes
 *       outside a required enumeration);
 *   <li>cardinality and order: the resource as XML against HL7's R4 XML schema (fhir-single.xsd);
 *   <li>terminology: every Coding against the R4 code systems (a code a complete code system
 *       lacks is an error; a code system R4 does not know is an error when its URI is in a
 *       reserved namespace such as urn:ietf / urn:iso, else a warning);
 *   <li>bindings: the resource's StructureDefinition bindings (required: error; extensible: a
 *       warning when no coding is in the value set).
 * </ol>
 *
 * Prints one tab-separated line per issue: file, ERROR|WARNING, location, message.
 */
public final class Main {
  private static final String RES = "/org/hl7/fhir/r4/model/";
  /** Code systems the R4 validator knows without a definition to read. */
  private static final Set<String> EXTERNAL =
      Set.of(
          "http://snomed.info/sct",
          "http://loinc.org",
          "http://unitsofmeasure.org",
          "urn:ietf:bcp:47",
          "urn:ietf:bcp:13",
          "urn:iso:std:iso:3166",
          "urn:iso:std:iso:4217",
          "http://www.nlm.nih.gov/research/umls/rxnorm");

  private final FhirContext ctx = FhirContext.forR4();
  private final Map<String, CodeSystem> codeSystems = new HashMap<>();
  private final Map<String, ValueSet> valueSets = new HashMap<>();
  private final Map<String, StructureDefinition> structures = new HashMap<>();
  private final Schema schema;
  private final List<String> out = new ArrayList<>();

  private Main() throws Exception {
    for (String f : List.of("valueset/valuesets.xml", "valueset/v3-codesystems.xml", "valueset/v2-tables.xml")) {
      for (Resource r : bundle(f)) {
        if (r instanceof CodeSystem cs) codeSystems.put(cs.getUrl(), cs);
        if (r instanceof ValueSet vs) valueSets.put(vs.getUrl(), vs);
      }
    }
    for (Resource r : bundle("profile/profiles-resources.xml")) {
      if (r instanceof StructureDefinition sd) structures.put(sd.getType(), sd);
    }
    URL xsd = Main.class.getResource(RES + "schema/fhir-single.xsd");
    schema = SchemaFactory.newInstance(XMLConstants.W3C_XML_SCHEMA_NS_URI).newSchema(xsd);
  }

  private List<Resource> bundle(String file) throws Exception {
    try (InputStream in = Main.class.getResourceAsStream(RES + file)) {
      if (in == null) throw new IllegalStateException("missing " + file + " on the classpath");
      Bundle b = ctx.newXmlParser().parseResource(Bundle.class, new InputStreamReader(in, StandardCharsets.UTF_8));
      List<Resource> rs = new ArrayList<>();
      for (Bundle.BundleEntryComponent e : b.getEntry()) rs.add(e.getResource());
      return rs;
    }
  }

  private void issue(String file, String severity, String where, String message) {
    out.add(file + "\t" + severity + "\t" + where + "\t" + message.replace('\n', ' ').replace('\t', ' '));
  }

  private void check(String file) throws Exception {
    String text = Files.readString(Path.of(file), StandardCharsets.UTF_8);
    IParser json = ctx.newJsonParser();
    json.setParserErrorHandler(new StrictErrorHandler());
    IBaseResource res;
    try {
      res = json.parseResource(text);
    } catch (DataFormatException e) {
      issue(file, "ERROR", "(structure)", e.getMessage());
      return;
    }
    xsd(file, ctx.newXmlParser().encodeResourceToString(res));
    FhirTerser terser = ctx.newTerser();
    for (Coding c : terser.getAllPopulatedChildElementsOfType(res, Coding.class)) coding(file, c);
    bindings(file, res, terser);
  }

  private void xsd(String file, String xml) throws Exception {
    Validator v = schema.newValidator();
    v.setErrorHandler(
        new ErrorHandler() {
          public void warning(SAXParseException e) {
            issue(file, "WARNING", "(xml schema)", e.getMessage());
          }

          public void error(SAXParseException e) {
            issue(file, "ERROR", "(xml schema)", e.getMessage());
          }

          public void fatalError(SAXParseException e) {
            issue(file, "ERROR", "(xml schema)", e.getMessage());
          }
        });
    v.validate(new StreamSource(new StringReader(xml)));
  }

  private static Map<String, String> concepts(CodeSystem cs) {
    Map<String, String> m = new HashMap<>();
    flatten(cs.getConcept(), m);
    return m;
  }

  private static void flatten(List<CodeSystem.ConceptDefinitionComponent> cs, Map<String, String> m) {
    for (CodeSystem.ConceptDefinitionComponent c : cs) {
      m.put(c.getCode(), c.getDisplay());
      flatten(c.getConcept(), m);
    }
  }

  private void coding(String file, Coding c) {
    String where = c.getSystem() + "#" + c.getCode();
    if (!c.hasSystem()) {
      issue(file, "WARNING", where, "a Coding without a system cannot be checked");
      return;
    }
    CodeSystem cs = codeSystems.get(c.getSystem());
    if (cs == null) {
      if (EXTERNAL.contains(c.getSystem())) return;
      boolean reserved = c.getSystem().startsWith("urn:ietf:") || c.getSystem().startsWith("urn:iso:");
      issue(
          file,
          reserved ? "ERROR" : "WARNING",
          where,
          reserved
              ? "'" + c.getSystem() + "' is not a known code system URI"
              : "code system '" + c.getSystem() + "' is not known to FHIR R4; its codes cannot be checked");
      return;
    }
    if (cs.getContent() != CodeSystem.CodeSystemContentMode.COMPLETE) return;
    Map<String, String> m = concepts(cs);
    if (!m.containsKey(c.getCode())) {
      issue(file, "ERROR", where, "unknown code '" + c.getCode() + "' in the code system '" + c.getSystem() + "'");
    } else if (c.hasDisplay() && m.get(c.getCode()) != null && !m.get(c.getCode()).equalsIgnoreCase(c.getDisplay())) {
      issue(file, "WARNING", where, "display '" + c.getDisplay() + "' is not '" + m.get(c.getCode()) + "'");
    }
  }

  /** (system|code) pairs of a value set, or null when it uses filters this checker cannot expand. */
  private Set<String> expand(String url, Set<String> seen) {
    ValueSet vs = valueSets.get(url.split("\\|")[0]);
    if (vs == null || !seen.add(url)) return null;
    Set<String> codes = new HashSet<>();
    for (ValueSet.ConceptSetComponent inc : vs.getCompose().getInclude()) {
      if (inc.hasFilter()) return null;
      for (var imported : inc.getValueSet()) {
        Set<String> sub = expand(imported.getValue(), seen);
        if (sub == null) return null;
        codes.addAll(sub);
      }
      if (!inc.hasSystem()) continue;
      if (inc.hasConcept()) {
        for (var c : inc.getConcept()) codes.add(inc.getSystem() + "|" + c.getCode());
      } else {
        CodeSystem cs = codeSystems.get(inc.getSystem());
        if (cs == null) return null;
        for (String code : concepts(cs).keySet()) codes.add(inc.getSystem() + "|" + code);
      }
    }
    return codes;
  }

  private void bindings(String file, IBaseResource res, FhirTerser terser) {
    StructureDefinition sd = structures.get(res.fhirType());
    if (sd == null) return;
    for (ElementDefinition ed : sd.getSnapshot().getElement()) {
      if (!ed.hasBinding() || !ed.getBinding().hasValueSet() || ed.getPath().contains("[x]")) continue;
      BindingStrength strength = ed.getBinding().getStrength();
      if (strength != BindingStrength.REQUIRED && strength != BindingStrength.EXTENSIBLE) continue;
      Set<String> allowed = expand(ed.getBinding().getValueSet(), new HashSet<>());
      if (allowed == null) continue;
      for (IBase value : terser.getValues(res, ed.getPath())) {
        List<Coding> codings = new ArrayList<>();
        if (value instanceof Coding c) codings.add(c);
        else if (value instanceof CodeableConcept cc) codings.addAll(cc.getCoding());
        else continue; // code-typed elements: the strict parser checked their enumeration
        boolean any = codings.stream().anyMatch(c -> allowed.contains(c.getSystem() + "|" + c.getCode()));
        if (any || codings.isEmpty()) continue;
        String shown = codings.stream().map(c -> c.getSystem() + "#" + c.getCode()).reduce((a, b) -> a + ", " + b).orElse("");
        issue(
            file,
            strength == BindingStrength.REQUIRED ? "ERROR" : "WARNING",
            ed.getPath(),
            "none of " + shown + " is in the " + strength.toCode() + " value set " + ed.getBinding().getValueSet());
      }
    }
  }

  public static void main(String[] args) throws Exception {
    Main m = new Main();
    for (String file : args) m.check(file);
    for (String line : m.out) System.out.println(line);
  }
}
